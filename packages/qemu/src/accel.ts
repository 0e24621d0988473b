import { readFile } from 'node:fs/promises';
import type { ProcessRunner, RunResult } from '@execenv/core';
import { HOST_PATH } from '@execenv/core/driver';
import { machineOption, type QemuMachineType } from './qemu-command.js';

/**
 * The accelerator a guest runs with, and why it was chosen.
 *
 * @example
 * ```ts
 * import { type AccelChoice, QemuDriver } from '@execenv/qemu';
 * const choice: AccelChoice = await new QemuDriver({ accel: 'auto' }).accel();
 * if (choice.accel === 'tcg') console.warn(`guests will be slow: ${choice.reason}`);
 * ```
 */
export interface AccelChoice {
  accel: 'kvm' | 'tcg';
  reason: string;
}

/**
 * What starting QEMU with KVM said: whether it worked, and QEMU's own words when not.
 *
 * @example
 * ```ts
 * import { chooseAccel, type KvmProbe } from '@execenv/qemu';
 * const nestedGuest: KvmProbe = { works: false, error: 'qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69' };
 * chooseAccel('auto', nestedGuest).accel; // 'tcg'
 * ```
 */
export interface KvmProbe {
  works: boolean;
  /** Why not: QEMU's error lines, or how it ended. */
  error?: string;
}

/** How long the probe may take; QEMU answers within a second on an idle host. */
const PROBE_TIMEOUT_MS = 30_000;
const MAX_ERROR_LENGTH = 400;

/**
 * The QEMU command that tells whether KVM works: the guests' machine type
 * and CPU (`-cpu host`) under `-accel kvm`, stopped before its first
 * instruction (`-S`), with QMP on stdio to ask `query-kvm` and `quit`.
 * A host where /dev/kvm opens but cannot run such a guest fails here, with
 * QEMU's reason on stderr.
 *
 * @example
 * ```ts
 * import { kvmProbeArgv } from '@execenv/qemu';
 * kvmProbeArgv('qemu-system-x86_64', 'microvm');
 * // ['qemu-system-x86_64', '-machine', 'microvm,x-option-roms=off,rtc=on', '-accel', 'kvm', '-cpu', 'host', ...]
 * ```
 */
export function kvmProbeArgv(binary: string, machine: QemuMachineType): string[] {
  return [
    binary,
    '-machine',
    machineOption(machine),
    '-accel',
    'kvm',
    '-cpu',
    'host',
    '-nodefaults',
    '-no-user-config',
    '-display',
    'none',
    '-S',
    '-qmp',
    'stdio',
  ];
}

/**
 * What the KVM probe writes to QEMU's QMP on stdin: negotiate, `query-kvm` (answered under id `kvm`), `quit`.
 *
 * @example
 * ```ts
 * import { hostRunner } from '@execenv/core';
 * import { KVM_PROBE_INPUT, kvmProbeArgv } from '@execenv/qemu';
 * const result = await hostRunner().run(kvmProbeArgv('qemu-system-x86_64', 'q35'), { input: KVM_PROBE_INPUT, check: false });
 * ```
 */
export const KVM_PROBE_INPUT = `${[
  { execute: 'qmp_capabilities' },
  { execute: 'query-kvm', id: 'kvm' },
  { execute: 'quit' },
]
  .map((command) => JSON.stringify(command))
  .join('\n')}\n`;

/**
 * Reads the outcome of the KVM probe: it works when QEMU ended cleanly and
 * `query-kvm` said KVM is enabled; else the error is QEMU's own (its error
 * lines, warnings only when there is nothing else), or how it ended.
 *
 * @example
 * ```ts
 * import { hostRunner } from '@execenv/core';
 * import { KVM_PROBE_INPUT, kvmProbeArgv, readKvmProbe } from '@execenv/qemu';
 * const result = await hostRunner().run(kvmProbeArgv('qemu-system-x86_64', 'microvm'), {
 *   input: KVM_PROBE_INPUT,
 *   check: false,
 * });
 * readKvmProbe(result); // { works: false, error: 'qemu-system-x86_64: Could not access KVM kernel module: ...' }
 * ```
 */
export function readKvmProbe(result: RunResult): KvmProbe {
  const lines = result.stderr
    .split('\n')
    .map((line) => line.trim())
    .filter(Boolean);
  const errors = lines.filter((line) => !/: warning: /.test(line));
  const said = (errors.length > 0 ? errors : lines).join('; ');
  const quoted = said.length > MAX_ERROR_LENGTH ? `${said.slice(0, MAX_ERROR_LENGTH)}…` : said;
  if (result.exitCode === 0 && kvmEnabled(result.stdout)) return { works: true };
  if (quoted) return { works: false, error: quoted };
  if (result.exitCode === 0) return { works: false, error: 'QEMU started, but query-kvm says KVM is not enabled' };
  return {
    works: false,
    error: `QEMU ended with ${result.signal ? `signal ${result.signal}` : `exit status ${result.exitCode}`}`,
  };
}

/** Whether QMP on stdout answered `query-kvm` with KVM enabled. */
function kvmEnabled(stdout: string): boolean {
  for (const line of stdout.split('\n')) {
    try {
      const message = JSON.parse(line) as { id?: unknown; return?: { enabled?: unknown } };
      if (message.id === 'kvm') return message.return?.enabled === true;
    } catch {
      // Not a QMP message.
    }
  }
  return false;
}

/**
 * Starts QEMU once with KVM as a guest would use it and reports whether
 * that worked (see kvmProbeArgv).
 *
 * @example
 * ```ts
 * import { hostRunner } from '@execenv/core';
 * import { probeKvm } from '@execenv/qemu';
 * const probe = await probeKvm(hostRunner(), 'qemu-system-x86_64', 'microvm');
 * if (!probe.works) console.warn(`no KVM: ${probe.error}`);
 * ```
 */
export async function probeKvm(runner: ProcessRunner, binary: string, machine: QemuMachineType): Promise<KvmProbe> {
  try {
    const result = await runner.run(kvmProbeArgv(binary, machine), {
      input: KVM_PROBE_INPUT,
      check: false,
      timeout: PROBE_TIMEOUT_MS,
      env: { PATH: HOST_PATH },
    });
    return readKvmProbe(result);
  } catch (err) {
    return { works: false, error: `${binary} could not run: ${(err as Error).message}` };
  }
}

/**
 * Chooses the accelerator: `kvm` or `tcg` when asked for, else KVM when
 * QEMU started with it, else TCG, quoting QEMU.
 *
 * @example
 * ```ts
 * import { chooseAccel } from '@execenv/qemu';
 * chooseAccel('auto', { works: true }); // { accel: 'kvm', reason: 'KVM works: ...' }
 * chooseAccel('auto', { works: false, error: 'Could not access KVM kernel module' }).reason;
 * // 'KVM does not work here (Could not access KVM kernel module): software emulation (TCG)'
 * chooseAccel('kvm', { works: false }).accel; // 'kvm': asked for, whatever the host offers
 * ```
 */
export function chooseAccel(asked: 'auto' | 'kvm' | 'tcg', probe: KvmProbe): AccelChoice {
  if (asked === 'kvm') return { accel: 'kvm', reason: 'KVM was asked for' };
  if (asked === 'tcg') return { accel: 'tcg', reason: 'TCG was asked for' };
  if (probe.works) return { accel: 'kvm', reason: 'KVM works: QEMU started a guest machine with it' };
  return {
    accel: 'tcg',
    reason: `KVM does not work here (${probe.error ?? 'QEMU did not say why'}): software emulation (TCG)`,
  };
}

/**
 * The host's TSC rate in kHz, from /proc/cpuinfo ("cpu MHz"); undefined when it does not say.
 *
 * @example
 * ```ts
 * import { hostTscKhz } from '@execenv/qemu';
 * const khz = await hostTscKhz(); // e.g. 2904000
 * // For a TCG guest's kernel command line (QemuMachine.tscKhz does this): it need not calibrate its clock.
 * const append = khz === undefined ? [] : [`tsc_early_khz=${khz}`, 'tsc=reliable'];
 * ```
 */
export async function hostTscKhz(): Promise<number | undefined> {
  const cpuinfo = await readFile('/proc/cpuinfo', 'utf8').catch(() => '');
  const mhz = /^cpu MHz\s*:\s*([0-9.]+)/m.exec(cpuinfo)?.[1];
  return mhz ? Math.round(Number(mhz) * 1000) : undefined;
}
