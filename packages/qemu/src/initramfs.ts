import { createHash } from 'node:crypto';
import { mkdir, open, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { DriverUnavailableError } from '@execenv/core';
import { type CpioEntry, packCpio } from './cpio.js';
import { BOOT_MODULES, moduleLoadOrder, type QemuKernel, readModulesDep } from './kernel.js';

/** Name of the virtio serial port the agent speaks on; the init script finds its device by it. */
export const AGENT_PORT_NAME = 'org.execenv.agent';

/** What goes into a guest's initramfs. */
export interface InitramfsInputs {
  kernel: QemuKernel;
  /** The static agent binary for the guest's architecture. */
  agent: string;
  /** A static busybox for the init script (Debian's busybox-static: /bin/busybox). */
  busybox: string;
}

/**
 * The init script: mounts the kernel filesystems, loads the boot modules,
 * mounts the root disk and runs the agent as init of the root's namespaces,
 * speaking on the agent port; syncs the disk and powers the guest off when
 * the agent ends.
 * Lines starting `execenv-init:` reach the console, which boot errors quote.
 */
export function initScript(modules: readonly string[]): string {
  const insmods = modules.map((m) => `/bin/busybox insmod /lib/modules/${m.split('/').pop()} || fail "insmod ${m}"`);
  return `#!/bin/busybox sh
fail() { echo "execenv-init: $*" >/dev/console; /bin/busybox poweroff -f; }
/bin/busybox mount -t devtmpfs dev /dev || fail "mount /dev"
/bin/busybox mount -t proc proc /proc || fail "mount /proc"
/bin/busybox mount -t sysfs sys /sys || fail "mount /sys"
${insmods.join('\n')}
/bin/busybox mount -t ext4 /dev/vda /newroot || fail "cannot mount the root disk /dev/vda"
port=
for p in /sys/class/virtio-ports/*; do
  [ "$(/bin/busybox cat "$p/name" 2>/dev/null)" = ${AGENT_PORT_NAME} ] && port=/dev/\${p##*/}
done
[ -n "$port" ] || fail "no virtio port named ${AGENT_PORT_NAME}"
# /execenv.conf, appended per guest: host directories on 9p, bound into the root by the agent.
if [ -f /execenv.conf ]; then
  while read -r kind tag target; do
    case "$kind" in bind) opts=rw ;; bind-ro) opts=ro ;; *) continue ;; esac
    /bin/busybox mkdir -p "/shares/$tag"
    /bin/busybox mount -t 9p -o "$opts,trans=virtio,version=9p2000.L,msize=262144" "$tag" "/shares/$tag" ||
      fail "cannot mount the shared directory $tag"
    set -- "$@" "--$kind" "/shares/$tag" "$target"
  done </execenv.conf
fi
echo "execenv-init: agent on $port" >/dev/console
/execenv-agent --root /newroot "$@" --stdio <>"$port" >&0
status=$?
# What the guest wrote reaches the disk before it powers off (a reboot keeps it).
/bin/busybox sync
[ "$status" = 0 ] || fail "the agent exited with status $status"
/bin/busybox poweroff -f
`;
}

/**
 * Builds (once per distinct content) the initramfs of a guest, gzip
 * compressed, under `dir`, and returns its path. The name is the content's
 * sha256, so guests of the same kernel and agent share one file.
 * @throws DriverUnavailableError when busybox is not static or the kernel lacks a module.
 */
export async function buildInitramfs(inputs: InitramfsInputs, dir: string): Promise<string> {
  if (!(await isStaticElf(inputs.busybox)))
    throw new DriverUnavailableError(
      'qemu',
      `${inputs.busybox} is not a static binary: the initramfs needs a static busybox (apt-get install busybox-static)`,
    );
  const modules = moduleLoadOrder(await readModulesDep(inputs.kernel), BOOT_MODULES);
  if (!modules.some((m) => m.endsWith('/virtio_console.ko')))
    throw new DriverUnavailableError('qemu', `kernel ${inputs.kernel.release} has no virtio_console module`);
  const entries: CpioEntry[] = [
    ...['bin', 'dev', 'proc', 'sys', 'newroot', 'lib', 'lib/modules'].map((path) => ({
      type: 'directory' as const,
      path,
    })),
    { type: 'file', path: 'bin/busybox', content: await readFile(inputs.busybox), mode: 0o755 },
    { type: 'file', path: 'execenv-agent', content: await readFile(inputs.agent), mode: 0o755 },
    { type: 'file', path: 'init', content: Buffer.from(initScript(modules)), mode: 0o755 },
  ];
  for (const m of modules)
    entries.push({
      type: 'file',
      path: `lib/modules/${m.split('/').pop()}`,
      content: await readFile(join(inputs.kernel.modulesDir, m)),
    });
  const archive = gzipSync(packCpio(entries), { level: 1 });
  const digest = createHash('sha256').update(archive).digest('hex').slice(0, 32);
  const path = join(dir, `initramfs-${digest}.cpio.gz`);
  if (await stat(path).catch(() => undefined)) return path;
  await mkdir(dir, { recursive: true });
  const temp = `${path}.${process.pid}.tmp`;
  await writeFile(temp, archive);
  await rename(temp, path);
  return path;
}

/** Whether an ELF file has no program interpreter (PT_INTERP), i.e. is statically linked. */
export async function isStaticElf(path: string): Promise<boolean> {
  const file = await open(path, 'r').catch(() => undefined);
  if (!file) return false;
  try {
    const header = Buffer.alloc(64);
    await file.read(header, 0, 64, 0);
    if (header.readUInt32BE(0) !== 0x7f454c46) return false;
    const is64 = header[4] === 2;
    const le = header[5] === 1;
    const u16 = (b: Buffer, o: number) => (le ? b.readUInt16LE(o) : b.readUInt16BE(o));
    const u32 = (b: Buffer, o: number) => (le ? b.readUInt32LE(o) : b.readUInt32BE(o));
    const phoff = is64 ? Number(le ? header.readBigUInt64LE(32) : header.readBigUInt64BE(32)) : u32(header, 28);
    const phentsize = u16(header, is64 ? 54 : 42);
    const phnum = u16(header, is64 ? 56 : 44);
    const table = Buffer.alloc(phentsize * phnum);
    await file.read(table, 0, table.length, phoff);
    for (let i = 0; i < phnum; i++) if (u32(table, i * phentsize) === 3) return false;
    return true;
  } finally {
    await file.close();
  }
}

/** A host directory bound into a guest's root: its 9p mount tag and the path inside. */
export interface GuestBind {
  tag: string;
  target: string;
  readOnly: boolean;
}

/**
 * The initramfs of one guest: the shared one with `/execenv.conf` appended
 * as a second compressed archive (the kernel unpacks both), naming the 9p
 * shares the init script mounts and the agent binds into the root.
 * @throws RangeError on a target the configuration cannot carry (not absolute, or with a newline).
 */
export async function guestInitramfs(shared: string, binds: readonly GuestBind[], path: string): Promise<string> {
  if (binds.length === 0) return shared;
  const lines = binds.map((b) => {
    if (!b.target.startsWith('/') || /[\n\0]/.test(b.target) || !/^[A-Za-z0-9_]{1,31}$/.test(b.tag))
      throw new RangeError(`cannot bind ${JSON.stringify(b.target)} (tag ${b.tag}) into a guest`);
    return `${b.readOnly ? 'bind-ro' : 'bind'} ${b.tag} ${b.target}\n`;
  });
  const config = gzipSync(packCpio([{ type: 'file', path: 'execenv.conf', content: Buffer.from(lines.join('')) }]));
  await writeFile(path, Buffer.concat([await readFile(shared), config]));
  return path;
}
