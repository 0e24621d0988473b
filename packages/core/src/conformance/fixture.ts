import { chmod, copyFile, mkdir, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { findBinary, hostEnv } from '../driver/host.js';
import { isStaticElf } from '../driver/static-elf.js';
import { hostRunner, type ProcessRunner } from '../runner.js';

/**
 * Options of buildConformanceImage.
 *
 * @example
 * ```ts
 * import { buildConformanceImage, type ConformanceImageOptions } from '@execenv/core/conformance';
 * const options: ConformanceImageOptions = {
 *   dest: join(tmpdir(), 'conformance.tar'),
 *   busybox: '/usr/lib/foo/busybox', // static; it is run on the host to list its applets
 * };
 * await buildConformanceImage(options);
 * ```
 */
export interface ConformanceImageOptions {
  /** Path of the rootfs tarball to write. */
  dest: string;
  /**
   * A statically linked busybox binary for the image's architecture.
   * @default the host's `busybox` when it is static, else the one in the
   * Debian package busybox-static (`apt-get download`, `dpkg-deb -x`)
   */
  busybox?: string;
  /** Runs apt-get, dpkg-deb and tar. @default hostRunner() */
  runner?: ProcessRunner;
}

const PASSWD = 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n';
const GROUP = 'root:x:0:\nnogroup:x:65534:\n';
const SHADOW = 'root:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n';

async function staticBusybox(work: string, runner: ProcessRunner): Promise<string> {
  const host = await findBinary('busybox');
  if (host && (await isStaticElf(host))) return host;
  await runner.run(['apt-get', 'download', '-qq', 'busybox-static'], { cwd: work, env: hostEnv() });
  const deb = (await readdir(work)).find((n) => n.startsWith('busybox-static_') && n.endsWith('.deb'));
  if (!deb) throw new Error('execenv: apt-get download busybox-static gave no .deb');
  await runner.run(['dpkg-deb', '-x', join(work, deb), join(work, 'pkg')], { env: hostEnv() });
  return join(work, 'pkg', 'bin', 'busybox');
}

/**
 * buildConformanceImage writes a rootfs tarball of about 2 MB that holds
 * everything the conformance suite needs from an image (image-prerequisites):
 * a static busybox with every applet linked, root and `nobody`
 * (65534:65534), and a /tmp of mode 1777. Drivers that take rootfs tarballs
 * use it as `spec.image`; others import it into their backend first.
 * Returns `dest`.
 *
 * @example
 * ```ts
 * import { tmpdir } from 'node:os';
 * import { join } from 'node:path';
 * import { buildConformanceImage, describeConformance } from '@execenv/core/conformance';
 * const image = await buildConformanceImage({ dest: join(tmpdir(), 'execenv-conformance.tar') });
 * describeConformance({ name: 'foo', driver: new FooDriver(), spec: { image } });
 * ```
 */
export async function buildConformanceImage(opts: ConformanceImageOptions): Promise<string> {
  const runner = opts.runner ?? hostRunner();
  const work = await mkdtemp(join(tmpdir(), 'execenv-image-'));
  try {
    const busybox = opts.busybox ?? (await staticBusybox(work, runner));
    const root = join(work, 'root');
    for (const d of ['bin', 'sbin', 'usr/bin', 'usr/sbin', 'etc', 'root', 'proc', 'sys', 'dev', 'run', 'var/tmp'])
      await mkdir(join(root, d), { recursive: true });
    await mkdir(join(root, 'tmp'));
    await chmod(join(root, 'tmp'), 0o1777);
    await copyFile(busybox, join(root, 'bin/busybox'));
    await chmod(join(root, 'bin/busybox'), 0o755);
    const applets = (await runner.run([busybox, '--list-full'], { env: hostEnv() })).stdout.split('\n').filter(Boolean);
    for (const applet of applets) {
      if (applet === 'bin/busybox') continue;
      await mkdir(dirname(join(root, applet)), { recursive: true });
      await symlink('/bin/busybox', join(root, applet)).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'EEXIST') throw err;
      });
    }
    await writeFile(join(root, 'etc/passwd'), PASSWD);
    await writeFile(join(root, 'etc/group'), GROUP);
    await writeFile(join(root, 'etc/shadow'), SHADOW, { mode: 0o640 });
    await writeFile(join(root, 'etc/hostname'), 'conformance\n');
    await runner.run(['tar', '--numeric-owner', '--owner=0', '--group=0', '-C', root, '-cf', opts.dest, '.'], {
      env: hostEnv(),
    });
    return opts.dest;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
