import { createReadStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import {
  AbortedError,
  type ExecenvEvent,
  emit,
  ImageNotFoundError,
  InvalidSpecError,
  type ProcessRunner,
  withLock,
} from '@execenv/core';
import { convertToPodmanInput, type ImageCache, type ResolvedImage } from '@execenv/images';
import { ROOTFS_LABEL, rootfsImageName } from './labels.js';
import type { PodmanCli } from './podman-cli.js';

/**
 * What ensureImage needs.
 *
 * @example
 * ```ts
 * import { hostRunner } from '@execenv/core';
 * import { ImageCache, resolveImage } from '@execenv/images';
 * import { type EnsureImageOptions, ensureImage, PodmanCli } from '@execenv/podman';
 * const cache = new ImageCache();
 * const reference = 'oci:docker.io/library/debian:bookworm';
 * const options: EnsureImageOptions = { cli: new PodmanCli(), cache, runner: hostRunner(), reference, pull: 'always' };
 * const name = await ensureImage(await resolveImage(reference, { cache }), options);
 * // name: 'docker.io/library/debian:bookworm', pulled even when podman had it
 * ```
 */
export interface EnsureImageOptions {
  /** The podman to import into or pull with. */
  cli: PodmanCli;
  /** Where converted tarballs are cached. */
  cache: ImageCache;
  /** Runs the decompressor of a tarball. */
  runner: ProcessRunner;
  /** The reference as the spec gave it, for events and errors. */
  reference: string;
  /** When to pull an OCI image. @default 'missing' */
  pull?: 'missing' | 'always' | 'never';
  /**
   * Image names already found in podman by this process: not asked about
   * again (one podman process less per open). Names found or made here are
   * added; the caller drops one podman no longer has.
   */
  known?: Set<string>;
  onEvent?: (e: ExecenvEvent) => void;
  signal?: AbortSignal;
}

/**
 * Makes the resolved image available to podman and returns the name to
 * create containers from: an OCI reference is pulled when missing (or
 * always); a rootfs tarball, or the rootfs tarball of a split image (what
 * an `index:` reference resolves to), is converted once into a plain checked tarball
 * (cached by digest) and imported once as `localhost/execenv-rootfs:<sha256>`,
 * labelled `execenv.rootfs`, so later opens reuse it and gc can tell it
 * from the user's images.
 *
 * @example
 * ```ts
 * import { hostRunner } from '@execenv/core';
 * import { ImageCache, resolveImage } from '@execenv/images';
 * import { createArgs, ensureImage, PodmanCli } from '@execenv/podman';
 * const cache = new ImageCache();
 * const cli = new PodmanCli();
 * const resolved = await resolveImage('/srv/bookworm.tar.zst', { cache });
 * const image = await ensureImage(resolved, { cli, cache, runner: hostRunner(), reference: '/srv/bookworm.tar.zst' });
 * // image: 'localhost/execenv-rootfs:<sha256>', ready for createArgs({ image, ... })
 * ```
 */
export async function ensureImage(image: ResolvedImage, o: EnsureImageOptions): Promise<string> {
  switch (image.kind) {
    case 'oci':
      return ensureOciImage(image.name, o);
    case 'rootfs-tarball':
      return ensureImportedRootfs(image.path, o);
    // A split image (an `index:` reference): its root filesystem tarball is the image; the metadata is LXC's or LXD's own.
    case 'lxc-download':
    case 'lxd-split':
      return ensureImportedRootfs(image.rootfs, o);
    default:
      throw new InvalidSpecError(
        'image',
        `"${o.reference}" is ${image.kind === 'directory' ? 'a directory' : `an image of kind ${image.kind}`}; podman takes an OCI reference (oci:NAME) or a root filesystem tarball`,
        { driver: 'podman', op: 'open' },
      );
  }
}

async function ensureOciImage(name: string, o: EnsureImageOptions): Promise<string> {
  const policy = o.pull ?? 'missing';
  if (policy !== 'always' && (o.known?.has(name) || (await o.cli.succeeds(['image', 'exists', name])))) {
    o.known?.add(name);
    return name;
  }
  if (policy === 'never')
    throw new ImageNotFoundError(o.reference, 'not in podman storage and pulling is disabled (pull: never)', {
      driver: 'podman',
      op: 'open',
    });
  emit(o.onEvent, { type: 'image-download', reference: o.reference, bytes: 0 });
  const puller = o.cli.spawn(['pull', name], { stdin: 'ignore', stdout: 'pipe', stderr: 'pipe' });
  let stderr = '';
  puller.stdout?.resume();
  puller.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
  const onAbort = () => puller.kill('SIGTERM');
  o.signal?.addEventListener('abort', onAbort, { once: true });
  const { exitCode } = await puller.exited.finally(() => o.signal?.removeEventListener('abort', onAbort));
  if (o.signal?.aborted)
    throw new AbortedError(`execenv: pulling ${name} was aborted`, {
      driver: 'podman',
      op: 'open',
      cause: o.signal.reason,
    });
  if (exitCode !== 0)
    throw new ImageNotFoundError(o.reference, `podman pull failed: ${lastLines(stderr)}`, {
      driver: 'podman',
      op: 'open',
    });
  const size = Number((await o.cli.run(['image', 'inspect', '--format', '{{.Size}}', name])).stdout.trim());
  if (Number.isFinite(size))
    emit(o.onEvent, { type: 'image-download', reference: o.reference, bytes: size, total: size });
  o.known?.add(name);
  return name;
}

async function ensureImportedRootfs(path: string, o: EnsureImageOptions): Promise<string> {
  const input = await convertToPodmanInput(path, { cache: o.cache, runner: o.runner, onEvent: o.onEvent });
  const name = rootfsImageName(input.digest);
  if (o.known?.has(name)) return name;
  if (await o.cli.succeeds(['image', 'exists', name])) {
    o.known?.add(name);
    return name;
  }
  // One import per digest at a time on this host: a second open waits and finds it.
  return withLock(`${input.path}.podman-import.lock`, async () => {
    if (await o.cli.succeeds(['image', 'exists', name])) return name;
    emit(o.onEvent, { type: 'image-convert', reference: o.reference, from: 'rootfs tarball', to: name });
    // Through stdin: a rootless or remote podman cannot read this user's cache.
    const importer = o.cli.spawn(
      [
        'import',
        '--change',
        `LABEL ${ROOTFS_LABEL}=${input.digest}`,
        '--message',
        `execenv: ${o.reference}`,
        '-',
        name,
      ],
      { stdin: 'pipe', stdout: 'pipe', stderr: 'pipe' },
    );
    let stderr = '';
    importer.stdout?.resume();
    importer.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
    const fed = pipeline(createReadStream(input.path), importer.stdin!).catch((err: unknown) => err);
    const { exitCode } = await importer.exited;
    const feedError = await fed;
    if (exitCode !== 0)
      throw new ImageNotFoundError(
        o.reference,
        `podman import failed: ${lastLines(stderr) || (feedError as Error)?.message || `exit ${exitCode}`}`,
        { driver: 'podman', op: 'open' },
      );
    o.known?.add(name);
    return name;
  });
}

function lastLines(text: string): string {
  return text.trim().split('\n').slice(-3).join(' ');
}
