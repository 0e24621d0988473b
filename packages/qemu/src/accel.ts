import { constants } from 'node:fs';
import { access, readFile } from 'node:fs/promises';

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
 * What the host offers for KVM; read from the host unless a test gives it.
 *
 * @example
 * ```ts
 * import { chooseAccel, type KvmFacts } from '@execenv/qemu';
 * const nestedGuest: KvmFacts = { device: true, cpuFlags: false }; // /dev/kvm without vmx/svm
 * chooseAccel('auto', nestedGuest).accel; // 'tcg'
 * ```
 */
export interface KvmFacts {
  /** Whether /dev/kvm can be opened for reading and writing. */
  device: boolean;
  /** Whether the CPU announces hardware virtualisation (vmx or svm in /proc/cpuinfo). */
  cpuFlags: boolean;
}

/** Reads the KVM facts of this host. */
export async function kvmFacts(): Promise<KvmFacts> {
  const device = await access('/dev/kvm', constants.R_OK | constants.W_OK).then(
    () => true,
    () => false,
  );
  const cpuinfo = await readFile('/proc/cpuinfo', 'utf8').catch(() => '');
  return { device, cpuFlags: /^flags\s*:.*\b(vmx|svm)\b/m.test(cpuinfo) };
}

/**
 * Chooses the accelerator: `kvm` or `tcg` when asked for, else KVM where the
 * device opens and the CPU has virtualisation extensions (a /dev/kvm without
 * them fails at the guest's first instruction), else TCG.
 *
 * @example
 * ```ts
 * import { chooseAccel } from '@execenv/qemu';
 * chooseAccel('auto', { device: true, cpuFlags: true }); // { accel: 'kvm', reason: '/dev/kvm and hardware ...' }
 * chooseAccel('auto', { device: false, cpuFlags: true }).accel; // 'tcg'
 * chooseAccel('kvm', { device: false, cpuFlags: false }).accel; // 'kvm': asked for, whatever the host offers
 * ```
 */
export function chooseAccel(asked: 'auto' | 'kvm' | 'tcg', facts: KvmFacts): AccelChoice {
  if (asked === 'kvm') return { accel: 'kvm', reason: 'KVM was asked for' };
  if (asked === 'tcg') return { accel: 'tcg', reason: 'TCG was asked for' };
  if (!facts.device) return { accel: 'tcg', reason: 'no usable /dev/kvm: software emulation (TCG)' };
  if (!facts.cpuFlags)
    return {
      accel: 'tcg',
      reason:
        '/dev/kvm exists but the CPU announces no vmx/svm (a nested guest without them): software emulation (TCG)',
    };
  return { accel: 'kvm', reason: '/dev/kvm and hardware virtualisation are available' };
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
