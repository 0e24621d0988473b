#!/usr/bin/env node
// The qemu driver against raw QEMU, measured side by side in one run, medians:
//   open -> ready -> close of a guest            (goal <= 4 s under TCG)
//   exec `true` through the agent               vs  /bin/true typed into a shell on a virtio serial port
//                                                   of the same kernel (goal <= 20 ms under TCG)
//   push / pull of a tree                        vs  tar | tar on the host (goal >= 0.5x throughput)
//   4 guests opened at once                      vs  one
// Usage: node tools/bench/qemu.mjs [--arch amd64|arm64] [--kernel DIR] [--image PATH] [--runs N] [--tree-mb N]
//                                  [--transfer-runs N] [--only open,exec,transfer,parallel]
// --arch arm64 boots arm64 guests (qemu-system-aarch64, virt) from the arm64 fixtures; on another host, under TCG.
import { execFileSync, spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { gzipSync } from 'node:zlib';
import { hostTscKhz, loadKernel, moduleLoadOrder, packCpio, QEMU_ARCHES, QemuDriver, qemuArgv } from '@execenv/qemu';
import { median, tarPipe, time } from './measure.mjs';

const { values } = parseArgs({
  options: {
    arch: { type: 'string', default: 'amd64' },
    kernel: { type: 'string' },
    image: { type: 'string' },
    runs: { type: 'string', default: '50' },
    'open-runs': { type: 'string', default: '3' },
    'tree-mb': { type: 'string', default: '100' },
    'transfer-runs': { type: 'string', default: '3' },
    only: { type: 'string' },
  },
});
const only = values.only ? new Set(values.only.split(',')) : undefined;
const measures = (row) => !only || only.has(row);
const fixture = (script) =>
  execFileSync('bash', [new URL(`../fixtures/${script}`, import.meta.url).pathname], { encoding: 'utf8' })
    .trim()
    .split('\n')
    .at(-1);
const arch = values.arch;
if (!Object.hasOwn(QEMU_ARCHES, arch)) throw new Error(`--arch: amd64 or arm64, not ${arch}`);
const arm64 = arch === 'arm64';
const kernelDir = arm64
  ? (values.kernel ?? process.env.EXECENV_QEMU_KERNEL_ARM64 ?? fixture('qemu-kernel-arm64.sh'))
  : (values.kernel ?? process.env.EXECENV_QEMU_KERNEL ?? fixture('qemu-kernel.sh'));
const image = arm64
  ? (values.image ?? fixture('busybox-rootfs-arm64.sh'))
  : (values.image ?? process.env.EXECENV_FIXTURE_BUSYBOX ?? fixture('busybox-rootfs.sh'));
const busybox = arm64 ? fixture('busybox-static-arm64.sh') : '/bin/busybox';

const work = await mkdtemp(join(tmpdir(), 'execenv-bench-qemu-'));
const stateDir = join(work, 'state');
const driver = new QemuDriver({ kernel: kernelDir, ...(arm64 ? { arch, busybox, bootTimeoutMs: 600_000 } : {}) });
const probe = await driver.probe();
console.log(`${probe.version}; ${probe.reason}`);
const rows = [];

/** A guest whose init is a shell on the serial port: the raw round trip the agent is measured against. */
async function shellGuest() {
  const kernel = await loadKernel(kernelDir);
  // microvm's devices are on virtio-mmio, virt's (as the driver boots it) on PCI.
  const modules = moduleLoadOrder(await readFile(join(kernel.modulesDir, 'modules.dep'), 'utf8'), [
    arm64 ? 'virtio_pci' : 'virtio_mmio',
    'virtio_console',
  ]);
  const init = `#!/bin/busybox sh
/bin/busybox mount -t devtmpfs dev /dev
/bin/busybox mount -t sysfs sys /sys
${modules.map((m) => `/bin/busybox insmod /lib/modules/${m.split('/').pop()}`).join('\n')}
for p in /sys/class/virtio-ports/*; do port=/dev/\${p##*/}; done
/bin/busybox --install -s /bin
exec /bin/busybox sh <>"$port" >&0 2>&0
`;
  const entries = [
    ...['bin', 'dev', 'sys', 'lib', 'lib/modules'].map((path) => ({ type: 'directory', path })),
    { type: 'file', path: 'bin/busybox', content: await readFile(busybox), mode: 0o755 },
    { type: 'file', path: 'init', content: Buffer.from(init), mode: 0o755 },
    ...(await Promise.all(
      modules.map(async (m) => ({
        type: 'file',
        path: `lib/modules/${m.split('/').pop()}`,
        content: await readFile(join(kernel.modulesDir, m)),
      })),
    )),
  ];
  const initramfs = join(work, 'shell-initramfs.gz');
  await writeFile(initramfs, gzipSync(packCpio(entries)));
  const disk = join(work, 'empty.qcow2');
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', disk, '16M']);
  const argv = qemuArgv({
    binary: QEMU_ARCHES[arch].binary,
    machine: arm64 ? 'virt' : 'microvm',
    accel: probe.details.accel,
    cpus: 1,
    memoryMiB: 256,
    kernel,
    initramfs,
    disk,
    agentSocket: join(work, 'shell.sock'),
    qmpSocket: join(work, 'shell-qmp.sock'),
    consoleLog: join(work, 'shell-console.log'),
    tscKhz: await hostTscKhz(),
  });
  const qemu = spawn(argv[0], argv.slice(1), { stdio: 'ignore' });
  let socket;
  for (let i = 0; i < 500 && !socket; i++) {
    socket = await new Promise((resolve) => {
      const s = createConnection(join(work, 'shell.sock'));
      s.once('connect', () => resolve(s));
      s.once('error', () => resolve(undefined));
    });
    if (!socket) await new Promise((r) => setTimeout(r, 20));
  }
  let seen = '';
  const waiters = [];
  socket.on('data', (d) => {
    seen += d.toString();
    for (const w of [...waiters]) if (seen.includes(w.marker)) w.resolve();
  });
  const roundTrip = (n) =>
    new Promise((resolve) => {
      const marker = `done-${n}`;
      waiters.push({ marker, resolve });
      socket.write(`/bin/true; echo ${marker.replace('-', '""-')}\n`);
    });
  for (let i = 0; i < 600 && !seen.includes('done-ready'); i++) {
    socket.write('echo done""-ready\n');
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    roundTrip,
    stop: () => {
      qemu.kill('SIGKILL');
      socket.destroy();
    },
  };
}

try {
  // open -> ready -> close
  const opens = [];
  if (measures('open')) {
    const boots = [];
    for (let i = 0; i < Number(values['open-runs']); i++) {
      let bootAt = 0;
      let readyMs = 0;
      opens.push(
        await time(async () => {
          const env = await driver.open(
            { image },
            {
              stateDir,
              onEvent: (e) => {
                if (e.type === 'boot') bootAt = Date.now();
                if (e.type === 'ready') readyMs = Date.now() - bootAt;
              },
            },
          );
          await env.close();
        }),
      );
      boots.push(readyMs);
    }
    rows.push({
      what: 'open -> ready -> close',
      sdk: median(opens),
      raw: median(boots),
      ratio: NaN,
      goal: '<= 4000 ms (raw: boot -> agent ready)',
    });
  }

  // exec round trip
  const env = measures('exec') || measures('transfer') ? await driver.open({ image }, { stateDir }) : undefined;
  const shell = measures('exec') ? await shellGuest() : undefined;
  try {
    if (shell) {
      const sdk = [];
      const raw = [];
      for (let i = 0; i < 5; i++) {
        await env.exec(['true']);
        await shell.roundTrip(`w${i}`);
      }
      for (let i = 0; i < Number(values.runs); i++) {
        sdk.push(await time(() => env.exec(['true'], { check: true })));
        raw.push(await time(() => shell.roundTrip(i)));
      }
      rows.push({
        what: 'exec true',
        sdk: median(sdk),
        raw: median(raw),
        ratio: median(sdk) / median(raw),
        goal: '<= 20 ms',
      });
    }

    // transfers: each run pushes a fresh copy and pulls it into a fresh directory
    if (measures('transfer')) {
      const tree = join(work, 'tree');
      await mkdir(tree);
      const chunk = Buffer.alloc(2 ** 20, 0x5a);
      const mb = Number(values['tree-mb']);
      for (let i = 0; i < 8; i++)
        await writeFile(join(tree, `big-${i}.bin`), Buffer.concat(Array(Math.floor((mb * 0.8) / 8)).fill(chunk)));
      for (let i = 0; i < 200; i++)
        await writeFile(join(tree, `f${i}`), chunk.subarray(0, Math.floor((mb * 0.2 * 2 ** 20) / 200)));
      const pushes = [];
      const pulls = [];
      const raws = [];
      for (let i = 0; i < Number(values['transfer-runs']); i++) {
        pushes.push(await time(() => env.push(tree, `/root/tree-${i}`)));
        pulls.push(await time(() => env.pull(`/root/tree-${i}`, join(work, `pulled-${i}`))));
        await mkdir(join(work, `raw-${i}`));
        raws.push(await time(() => tarPipe(tree, join(work, `raw-${i}`))));
        await env.exec(['rm', '-rf', `/root/tree-${i}`]);
        await rm(join(work, `pulled-${i}`), { recursive: true });
        await rm(join(work, `raw-${i}`), { recursive: true });
      }
      const [pushed, pulled, rawMs] = [median(pushes), median(pulls), median(raws)];
      rows.push({
        what: `push ${mb} MB tree`,
        sdk: pushed,
        raw: rawMs,
        ratio: rawMs / pushed,
        goal: '>= 0.5x throughput',
      });
      rows.push({
        what: `pull ${mb} MB tree`,
        sdk: pulled,
        raw: rawMs,
        ratio: rawMs / pulled,
        goal: '>= 0.5x throughput',
      });
    }
  } finally {
    shell?.stop();
    await env?.close();
  }

  // 4 at once
  if (measures('parallel')) {
    const one = await time(async () => (await driver.open({ image }, { stateDir })).close());
    const four = await time(async () => {
      const envs = await Promise.all([0, 1, 2, 3].map(() => driver.open({ image }, { stateDir })));
      await Promise.all(envs.map((e) => e.close()));
    });
    rows.push({ what: '4 guests at once', sdk: four, raw: one, ratio: four / one, goal: 'vs one guest' });
  }
} finally {
  await rm(work, { recursive: true, force: true });
}
for (const r of rows)
  console.log(
    `${r.what.padEnd(26)} sdk ${r.sdk.toFixed(1).padStart(9)} ms  raw ${r.raw.toFixed(1).padStart(9)} ms  ratio ${Number.isNaN(r.ratio) ? '   -' : r.ratio.toFixed(2)}  (${r.goal})`,
  );
