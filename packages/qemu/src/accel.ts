import { constants } from 'node:fs';
import { access, readFile } from 'node:fs/promises';

/** The accelerator a guest runs with, and why it was chosen. */
export interface AccelChoice {
  accel: 'kvm' | 'tcg';
  reason: string;
}

/** What the host offers for KVM; read from the host unless a test gives it. */
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

/** The host's TSC rate in kHz, from /proc/cpuinfo ("cpu MHz"); undefined when it does not say. */
export async function hostTscKhz(): Promise<number | undefined> {
  const cpuinfo = await readFile('/proc/cpuinfo', 'utf8').catch(() => '');
  const mhz = /^cpu MHz\s*:\s*([0-9.]+)/m.exec(cpuinfo)?.[1];
  return mhz ? Math.round(Number(mhz) * 1000) : undefined;
}
