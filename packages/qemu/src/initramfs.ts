import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { DriverUnavailableError } from '@execenv/core';
import { isStaticElf } from '@execenv/core/driver';
import { type CpioEntry, packCpio } from './cpio.js';
import type { GuestNetwork } from './guest-network.js';
import { BOOT_MODULES, moduleLoadOrder, NET_MODULES, type QemuKernel, readModulesDep } from './kernel.js';

/**
 * Name of the virtio serial port the agent speaks on; the init script finds its device by it.
 *
 * @example
 * ```ts
 * import { AGENT_PORT_NAME } from '@execenv/qemu';
 * // The QEMU side of the agent's channel, as qemuArgv writes it; the guest's init looks the name up.
 * const argv = ['-device', 'virtio-serial-device', '-device', `virtserialport,chardev=agent,name=${AGENT_PORT_NAME}`];
 * ```
 */
export const AGENT_PORT_NAME = 'org.execenv.agent';

/**
 * What goes into a guest's initramfs.
 *
 * @example
 * ```ts
 * import { agentBinaryPath } from '@execenv/agent';
 * import { buildInitramfs, type InitramfsInputs, loadKernel } from '@execenv/qemu';
 * const inputs: InitramfsInputs = {
 *   kernel: await loadKernel('/srv/qemu-kernel'),
 *   agent: await agentBinaryPath('amd64'),
 *   busybox: '/bin/busybox', // Debian's busybox-static
 * };
 * const initramfs = await buildInitramfs(inputs, '/var/cache/execenv/qemu');
 * ```
 */
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
 * the agent ends. A guest whose configuration names a network interface
 * also loads `netModules` and configures it statically (address, default
 * route, the root's resolv.conf); the others skip them.
 * Lines starting `execenv-init:` reach the console, which boot errors quote.
 *
 * @example
 * ```ts
 * import { initScript, packCpio } from '@execenv/qemu';
 * const script = initScript(['kernel/fs/ext4/ext4.ko'], ['kernel/drivers/net/virtio_net.ko']);
 * const init = packCpio([{ type: 'file', path: 'init', content: new TextEncoder().encode(script), mode: 0o755 }]);
 * ```
 */
export function initScript(modules: readonly string[], netModules: readonly string[] = []): string {
  const insmod = (m: string) => `/bin/busybox insmod /lib/modules/${m.split('/').pop()} || fail "insmod ${m}"`;
  return `#!/bin/busybox sh
fail() { echo "execenv-init: $*" >/dev/console; /bin/busybox poweroff -f; }
# netup MAC ADDRESS/PREFIX GATEWAY: the interface with that MAC, addressed and routed.
netup() {
  dev=
  for n in /sys/class/net/*; do
    [ "$(/bin/busybox cat "$n/address" 2>/dev/null)" = "$1" ] && dev=\${n##*/}
  done
  [ -n "$dev" ] || fail "no network interface with MAC $1"
  /bin/busybox ip link set dev "$dev" up &&
    /bin/busybox ip addr add "$2" dev "$dev" &&
    /bin/busybox ip route add default via "$3" dev "$dev" ||
    fail "cannot configure $dev as $2 via $3"
}
/bin/busybox mount -t devtmpfs dev /dev || fail "mount /dev"
/bin/busybox mount -t proc proc /proc || fail "mount /proc"
/bin/busybox mount -t sysfs sys /sys || fail "mount /sys"
${modules.map(insmod).join('\n')}
/bin/busybox mount -t ext4 /dev/vda /newroot || fail "cannot mount the root disk /dev/vda"
/bin/busybox ip link set dev lo up
port=
for p in /sys/class/virtio-ports/*; do
  [ "$(/bin/busybox cat "$p/name" 2>/dev/null)" = ${AGENT_PORT_NAME} ] && port=/dev/\${p##*/}
done
[ -n "$port" ] || fail "no virtio port named ${AGENT_PORT_NAME}"
# /execenv.conf, appended per guest: host directories on 9p, bound into the
# root by the agent, and the network interface (its MAC, address and gateway).
net=
pull=/dev/null
if [ -f /execenv.conf ]; then
  while read -r kind tag target; do
    case "$kind" in
    bind) opts=rw ;;
    bind-ro) opts=ro ;;
    pull) opts=rw ;;
    net) net="$tag $target" && continue ;;
    *) continue ;;
    esac
    /bin/busybox mkdir -p "/shares/$tag"
    /bin/busybox mount -t 9p -o "$opts,trans=virtio,version=9p2000.L,msize=512000" "$tag" "/shares/$tag" ||
      fail "cannot mount the shared directory $tag"
    # The pull share is bound nowhere in the root: the agent alone holds it, as descriptor 3.
    [ "$kind" = pull ] && pull="/shares/$tag" && continue
    set -- "$@" "--$kind" "/shares/$tag" "$target"
  done </execenv.conf
fi
if [ -n "$net" ]; then
${netModules.map((m) => `  ${insmod(m)}`).join('\n') || '  :'}
  netup $net
fi
# The image's resolv.conf (or a link to a resolver that is not running) gives way to the network's.
if [ -f /execenv-resolv.conf ]; then
  /bin/busybox mkdir -p /newroot/etc &&
    /bin/busybox rm -f /newroot/etc/resolv.conf &&
    /bin/busybox cp /execenv-resolv.conf /newroot/etc/resolv.conf ||
    fail "cannot write /etc/resolv.conf"
fi
echo "execenv-init: agent on $port" >/dev/console
/execenv-agent --root /newroot "$@" --stdio <>"$port" >&0 3<"$pull"
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
 *
 * @example
 * ```ts
 * import { agentBinaryPath } from '@execenv/agent';
 * import { buildInitramfs, loadKernel } from '@execenv/qemu';
 * const kernel = await loadKernel('/srv/qemu-kernel');
 * const inputs = { kernel, agent: await agentBinaryPath(), busybox: '/bin/busybox' };
 * const initramfs = await buildInitramfs(inputs, '/var/cache/execenv/qemu'); // .../initramfs-<sha256>.cpio.gz
 * // A second call with the same kernel, agent and busybox returns the same file.
 * ```
 */
export async function buildInitramfs(inputs: InitramfsInputs, dir: string): Promise<string> {
  if (!(await isStaticElf(inputs.busybox)))
    throw new DriverUnavailableError(
      'qemu',
      `${inputs.busybox} is not a static binary: the initramfs needs a static busybox (apt-get install busybox-static)`,
    );
  const modulesDep = await readModulesDep(inputs.kernel);
  const modules = moduleLoadOrder(modulesDep, BOOT_MODULES);
  if (!modules.some((m) => m.endsWith('/virtio_console.ko')))
    throw new DriverUnavailableError('qemu', `kernel ${inputs.kernel.release} has no virtio_console module`);
  const netModules = moduleLoadOrder(modulesDep, NET_MODULES).filter((m) => !modules.includes(m));
  const entries: CpioEntry[] = [
    ...['bin', 'dev', 'proc', 'sys', 'newroot', 'lib', 'lib/modules'].map((path) => ({
      type: 'directory' as const,
      path,
    })),
    { type: 'file', path: 'bin/busybox', content: await readFile(inputs.busybox), mode: 0o755 },
    { type: 'file', path: 'execenv-agent', content: await readFile(inputs.agent), mode: 0o755 },
    { type: 'file', path: 'init', content: Buffer.from(initScript(modules, netModules)), mode: 0o755 },
  ];
  for (const m of [...modules, ...netModules])
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

/** A host directory bound into a guest's root: its 9p mount tag and the path inside. */
export interface GuestBind {
  tag: string;
  target: string;
  readOnly: boolean;
}

/**
 * Checks that the guest configuration can carry each bind: an absolute
 * target without a newline, and a 9p tag of at most 31 word characters.
 * @throws RangeError naming the first that cannot.
 */
export function checkGuestBinds(binds: readonly GuestBind[]): void {
  for (const b of binds)
    if (!b.target.startsWith('/') || /[\n\0]/.test(b.target) || !/^[A-Za-z0-9_]{1,31}$/.test(b.tag))
      throw new RangeError(`cannot bind ${JSON.stringify(b.target)} (tag ${b.tag}) into a guest`);
}

/** What one guest's init is told beyond the shared initramfs. */
export interface GuestConfig {
  /** Host directories bound into the root. */
  binds: readonly GuestBind[];
  /** The 9p tag of the pull share the agent gets as descriptor 3 (mounted outside the root); none when absent. */
  pullTag?: string;
  /** The network interface to configure; none when absent. */
  network?: GuestNetwork;
}

const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;

/**
 * The initramfs of one guest: the shared one with `/execenv.conf` (and the
 * network's resolv.conf as `/execenv-resolv.conf`) appended as a second
 * compressed archive (the kernel unpacks both), naming the 9p shares the
 * init script mounts and the agent binds into the root, and the interface
 * init configures.
 * @throws RangeError on a value the configuration cannot carry (a target not absolute or with a newline, a malformed address).
 */
export async function guestInitramfs(shared: string, config: GuestConfig, path: string): Promise<string> {
  const { binds, network, pullTag } = config;
  if (binds.length === 0 && !network && !pullTag) return shared;
  checkGuestBinds(pullTag ? [...binds, { tag: pullTag, target: '/', readOnly: false }] : binds);
  const lines = binds.map((b) => `${b.readOnly ? 'bind-ro' : 'bind'} ${b.tag} ${b.target}\n`);
  if (pullTag) lines.push(`pull ${pullTag} -\n`);
  const entries: CpioEntry[] = [];
  if (network) {
    const { mac, address, prefixLength, gateway } = network;
    if (
      !MAC.test(mac) ||
      !IPV4.test(address) ||
      !IPV4.test(gateway) ||
      !Number.isInteger(prefixLength) ||
      prefixLength < 1 ||
      prefixLength > 32
    )
      throw new RangeError(`cannot configure a guest interface as ${JSON.stringify(network)}`);
    lines.push(`net ${mac} ${address}/${prefixLength} ${gateway}\n`);
    if (network.resolvConf !== undefined)
      entries.push({ type: 'file', path: 'execenv-resolv.conf', content: Buffer.from(network.resolvConf) });
  }
  entries.unshift({ type: 'file', path: 'execenv.conf', content: Buffer.from(lines.join('')) });
  const archive = gzipSync(packCpio(entries));
  await writeFile(path, Buffer.concat([await readFile(shared), archive]));
  return path;
}
