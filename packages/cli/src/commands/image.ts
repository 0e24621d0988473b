import { createReadStream } from 'node:fs';
import { copyFile, stat } from 'node:fs/promises';
import { basename, resolve } from 'node:path';
import { hostRunner, parseSize } from '@execenv/core';
import { hostArch } from '@execenv/core/driver';
import {
  type CacheEntry,
  convertToLxdUnified,
  convertToPodmanInput,
  convertToQcow2,
  type ImageCache,
  type ImageSettings,
  imageCacheOf,
  imageSettings,
  type ResolvedImage,
  resolveImage,
  rootfsDirectory,
  type TreeEntry,
} from '@execenv/images';
import { Command, InvalidArgumentError, Option } from 'commander';
import { UsageError } from '../cli-errors.js';
import type { CommandContext } from '../command-context.js';
import { configFilePath } from '../config.js';
import { formatAge, formatBytes, Output } from '../output.js';
import { createProgress, progressMode } from '../progress.js';
import { examples, withJson, withVerbosity } from './common-options.js';

interface ImageFlags {
  json?: boolean;
  quiet?: boolean;
  verbose?: boolean;
}

/** The effective image settings (@execenv/images) and the cache they describe. */
async function imageContext(ctx: CommandContext): Promise<{ settings: ImageSettings; cache: ImageCache }> {
  const settings = await imageSettings({ env: ctx.io.env, configFile: configFilePath(ctx.io.env) });
  return { settings, cache: imageCacheOf(settings, ctx.io.env) };
}

/** The local files a resolved image consists of, for one line of output. */
export function describeResolved(image: ResolvedImage): { kind: string; paths: string[] } {
  switch (image.kind) {
    case 'lxd-split':
    case 'lxc-download':
      return { kind: image.kind, paths: [image.meta, image.rootfs] };
    case 'lxd-alias':
      return { kind: image.kind, paths: [image.alias] };
    case 'oci':
      return { kind: image.kind, paths: [image.name] };
    default:
      return { kind: image.kind, paths: [image.path] };
  }
}

/** The root filesystem (a tarball or a directory) of a resolved image, as the converters take it. */
function rootfsOf(image: ResolvedImage, reference: string): string {
  switch (image.kind) {
    case 'directory':
    case 'rootfs-tarball':
      return image.path;
    case 'lxd-split':
    case 'lxc-download':
      return image.rootfs;
    default:
      throw new UsageError(
        `${reference} is ${image.kind === 'disk' ? 'a disk' : `an ${image.kind} image`}, not a root filesystem to convert`,
      );
  }
}

/** Resolves a reference with the configured servers and keys, showing downloads as progress. */
async function resolveWithProgress(ctx: CommandContext, reference: string, flags: ImageFlags) {
  const { settings, cache } = await imageContext(ctx);
  const progress = createProgress(ctx.io.stderr, progressMode(ctx.io.stderr, flags.quiet || flags.json), flags.verbose);
  const runner = hostRunner();
  try {
    const resolved = await resolveImage(reference, { ...settings, cache, runner, onEvent: progress.onEvent });
    return { resolved, cache, runner, progress };
  } catch (err) {
    progress.done();
    throw err;
  }
}

const CONVERSIONS = ['directory', 'lxd', 'qcow2', 'podman'] as const;
type Conversion = (typeof CONVERSIONS)[number];

interface ConvertFlags extends ImageFlags {
  to: Conversion;
  output?: string;
  size?: string;
  arch?: string;
  os?: string;
  release?: string;
}

/** Converts the root filesystem of `reference` as `--to` asks; returns the converted file or directory in the cache. */
async function convert(
  ctx: CommandContext,
  reference: string,
  flags: ConvertFlags,
): Promise<{ path: string; entry?: CacheEntry }> {
  const { resolved, cache, runner, progress } = await resolveWithProgress(ctx, reference, flags);
  try {
    const rootfs = rootfsOf(resolved, reference);
    const rctx = { cache, runner, onEvent: progress.onEvent };
    switch (flags.to) {
      case 'directory':
        return { path: await rootfsDirectory(rootfs, rctx) };
      case 'lxd': {
        const entry = await convertToLxdUnified(
          rootfs,
          { architecture: flags.arch ?? hostArch(), os: flags.os ?? 'linux', release: flags.release ?? 'unknown' },
          rctx,
        );
        return { path: entry.path, entry };
      }
      case 'qcow2': {
        const entry = await convertToQcow2(rootfs, flags.size ? { size: flags.size } : {}, rctx);
        return { path: entry.path, entry };
      }
      case 'podman': {
        const entry = await convertToPodmanInput(rootfs, rctx);
        return { path: entry.path, entry };
      }
    }
  } finally {
    progress.done();
  }
}

/** Finds the cached digests a prefix names; refuses an ambiguous or too short one. */
function matchDigest(prefix: string, digests: readonly string[]): string | undefined {
  if (!/^[a-f0-9]{6,64}$/.test(prefix))
    throw new UsageError(`"${prefix}" is not a digest or a prefix of one (6 to 64 hex digits)`);
  const found = [...new Set(digests.filter((d) => d.startsWith(prefix)))];
  if (found.length > 1) throw new UsageError(`"${prefix}" is ambiguous: it begins ${found.length} digests`);
  return found[0];
}

function parseBudget(value: string): number {
  const n = value === '0' ? 0 : parseSize(value);
  if (n === undefined) throw new InvalidArgumentError('expected a size such as 10G, 512M or a number of bytes');
  return n;
}

function sub(name: string, summary: string, description: string): Command {
  return withVerbosity(new Command(name).summary(summary).description(description));
}

/** `execenv image pull|import|convert|ls|rm|prune`. */
export function imageCommand(ctx: CommandContext): Command {
  const image = new Command('image')
    .summary('pull, import, convert, list, remove and prune images')
    .description(
      'Manage the image cache: fetch and verify images, import local tarballs, convert root filesystems for other drivers, list, remove and prune.',
    );
  image.addHelpText(
    'after',
    examples(
      'execenv image pull index:debian/bookworm/amd64',
      'execenv image import ./bookworm-minbase.tar.zst',
      'execenv image convert ./bookworm-minbase.tar.zst --to lxd --os debian --release bookworm -o bookworm.lxd.tar.zst',
      'execenv image ls',
      'execenv image prune --budget 10G',
    ),
  );

  image.addCommand(
    withJson(
      sub(
        'pull',
        'fetch and verify an image into the cache',
        'Fetch an image into the cache (URL or index:DIST/RELEASE/ARCH[/VARIANT]), checking its sha256 and signature as configured; print what it resolved to.',
      ),
    )
      .argument('<ref>', 'image reference')
      .addHelpText(
        'after',
        examples(
          'execenv image pull index:debian/bookworm/amd64',
          'execenv image pull https://example.org/rootfs.tar.xz',
        ),
      )
      .action(async (reference: string, flags: ImageFlags) => {
        try {
          const { resolved, progress } = await resolveWithProgress(ctx, reference, flags);
          progress.done();
          const d = describeResolved(resolved);
          const out = new Output(ctx.io, flags);
          if (flags.json) out.json({ reference, ...d });
          else out.line(`${d.kind} ${d.paths.join(' ')}`);
        } catch (err) {
          ctx.fail(err);
        }
      }),
  );

  image.addCommand(
    withJson(
      sub(
        'import',
        'copy a local image file into the cache',
        'Copy a local image file (a rootfs tarball, a unified LXD tarball, a disk) into the content-addressed cache; print its digest and path.',
      ),
    )
      .argument('<file>', 'local file')
      .option('--name <name>', 'name to list it under (default: the file name)')
      .addHelpText(
        'after',
        examples(
          'execenv image import ./bookworm-minbase.tar.zst',
          'execenv run --image "$(execenv image import -q ./rootfs.tar | cut -d" " -f2)" -- true',
        ),
      )
      .action(async (file: string, flags: ImageFlags & { name?: string }) => {
        try {
          const path = resolve(ctx.io.cwd, file);
          const info = await stat(path).catch(() => undefined);
          if (!info?.isFile()) throw new UsageError(`${file} is not a file`);
          const { cache } = await imageContext(ctx);
          const progress = createProgress(
            ctx.io.stderr,
            progressMode(ctx.io.stderr, flags.quiet || flags.json),
            flags.verbose,
          );
          const name = flags.name ?? basename(path);
          let entry: CacheEntry;
          try {
            entry = await cache.put(createReadStream(path, { highWaterMark: 1 << 20 }), {
              name,
              onProgress: (bytes) =>
                progress.onEvent({ type: 'image-download', reference: `import ${name}`, bytes, total: info.size }),
            });
          } finally {
            progress.done();
          }
          const out = new Output(ctx.io, flags);
          if (flags.json) out.json(entry);
          else out.line(`${entry.digest} ${entry.path}`);
        } catch (err) {
          ctx.fail(err);
        }
      }),
  );

  image.addCommand(
    withJson(
      sub(
        'convert',
        'convert a root filesystem for another driver',
        'Convert a root filesystem (tarball, directory, URL or index entry) for a driver: an extracted directory (chroot, nspawn), an LXD unified tarball, a qcow2 disk (qemu) or a podman import tarball. Results are cached.',
      ),
    )
      .argument('<ref>', 'image reference of a root filesystem')
      .addOption(new Option('--to <format>', 'what to convert to').choices(CONVERSIONS).makeOptionMandatory())
      .option('-o, --output <file>', 'also copy the converted file here (not for --to directory)')
      .option('--size <size>', 'qcow2: virtual disk size (default: 2G)')
      .option('--arch <arch>', "lxd: architecture in metadata.yaml (default: the host's)")
      .option('--os <name>', 'lxd: distribution in metadata.yaml (default: linux)')
      .option('--release <name>', 'lxd: release in metadata.yaml (default: unknown)')
      .addHelpText(
        'after',
        examples(
          'execenv image convert ./rootfs.tar.zst --to directory',
          'execenv image convert ./rootfs.tar.zst --to qcow2 --size 4G -o disk.qcow2',
        ),
      )
      .action(async (reference: string, flags: ConvertFlags) => {
        try {
          if (flags.output && flags.to === 'directory')
            throw new UsageError('--output takes a file; --to directory converts into the cache');
          const result = await convert(ctx, reference, flags);
          if (flags.output) await copyFile(result.path, resolve(ctx.io.cwd, flags.output));
          const out = new Output(ctx.io, flags);
          const path = flags.output ? resolve(ctx.io.cwd, flags.output) : result.path;
          if (flags.json)
            out.json({
              reference,
              to: flags.to,
              path,
              ...(result.entry ? { digest: result.entry.digest, size: result.entry.size } : {}),
            });
          else out.line(path);
        } catch (err) {
          ctx.fail(err);
        }
      }),
  );

  image.addCommand(
    withJson(
      sub(
        'ls',
        'list cached images and extracted trees',
        'List the cache: image files by digest, and the root filesystem trees extracted from them.',
      ),
    )
      .addHelpText('after', examples('execenv image ls', 'execenv image ls --json'))
      .action(async (flags: ImageFlags) => {
        try {
          const { cache } = await imageContext(ctx);
          const files = await cache.list();
          const trees = await cache.listTrees();
          const out = new Output(ctx.io, flags);
          if (flags.json) return out.json({ dir: cache.dir, files, trees });
          const now = Date.now();
          out.table(
            ['DIGEST', 'KIND', 'SIZE', 'USED', 'NAME'],
            [
              ...files.map((f) => [
                f.digest.slice(0, 12),
                'file',
                formatBytes(f.size),
                formatAge(now - f.lastUsed),
                f.name,
              ]),
              ...trees.map((t: TreeEntry) => [
                t.digest.slice(0, 12),
                t.inUse ? 'tree (in use)' : 'tree',
                formatBytes(t.size),
                formatAge(now - t.lastUsed),
                t.path,
              ]),
            ],
          );
        } catch (err) {
          ctx.fail(err);
        }
      }),
  );

  image.addCommand(
    sub(
      'rm',
      'remove cached images by digest',
      'Remove image files and the trees extracted from them, by digest or a unique prefix of at least 6 hex digits. Trees a running environment uses stay.',
    )
      .argument('<digest...>', 'digests or prefixes (see image ls)')
      .addHelpText('after', examples('execenv image rm 3f2a9c01b7e4'))
      .action(async (prefixes: string[], flags: ImageFlags) => {
        try {
          const { cache } = await imageContext(ctx);
          const digests = [
            ...(await cache.list()).map((f) => f.digest),
            ...(await cache.listTrees()).map((t) => t.digest),
          ];
          const targets = prefixes.map((p) => {
            const d = matchDigest(p, digests);
            if (!d) throw new UsageError(`no cached image matches ${p}`);
            return d;
          });
          const out = new Output(ctx.io, flags);
          for (const d of targets) {
            const file = await cache.remove(d);
            const tree = await cache.removeTree(d);
            const held = (await cache.listTrees()).some((t) => t.digest === d);
            if (held) {
              ctx.io.stderr.write(`execenv: ${d.slice(0, 12)}: a running environment uses its tree; kept\n`);
              ctx.exitCode = 1;
            }
            if (file || tree) out.line(`removed ${d}`);
          }
        } catch (err) {
          ctx.fail(err);
        }
      }),
  );

  image.addCommand(
    withJson(
      sub(
        'prune',
        'evict least recently used images past a budget',
        'Evict the least recently used images and trees until the cache fits a budget; trees in use or used in the last minute stay.',
      ),
    )
      .option('--budget <size>', 'bytes the cache may keep, e.g. 10G (default: the configured budget)', parseBudget)
      .option('--all', 'remove everything not in use (a budget of 0)')
      .addHelpText('after', examples('execenv image prune --budget 10G', 'execenv image prune --all'))
      .action(async (flags: ImageFlags & { budget?: number; all?: boolean }) => {
        try {
          const { settings, cache } = await imageContext(ctx);
          const budget = flags.all ? 0 : (flags.budget ?? settings.budgetBytes);
          if (budget === undefined)
            throw new UsageError(
              'no cache budget is configured: give --budget SIZE or --all (or set images.budgetBytes, $EXECENV_IMAGE_BUDGET)',
            );
          const removed = await cache.prune(budget);
          const out = new Output(ctx.io, flags);
          if (flags.json) return out.json({ budget, removed });
          for (const e of removed)
            out.line(`removed ${'inUse' in e ? 'tree' : 'file'} ${e.digest.slice(0, 12)} (${formatBytes(e.size)})`);
          out.info(`freed ${formatBytes(removed.reduce((n, e) => n + e.size, 0))}`);
        } catch (err) {
          ctx.fail(err);
        }
      }),
  );
  return image;
}
