import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const SCRIPT = fileURLToPath(new URL('../../tools/fixtures/qemu-kernel.sh', import.meta.url));
let built: string | undefined;

/** The guest kernel directory for the qemu driver: EXECENV_QEMU_KERNEL, else built (and cached) by tools/fixtures/qemu-kernel.sh. */
export function qemuKernel(): string {
  built ??=
    process.env.EXECENV_QEMU_KERNEL ??
    execFileSync('bash', [SCRIPT], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] })
      .trim()
      .split('\n')
      .at(-1)!;
  return built;
}

/** What an arm64 guest needs: its kernel directory, static busybox (initramfs) and busybox root filesystem. */
export interface Arm64Fixtures {
  kernel: string;
  busybox: string;
  rootfs: string;
}

let arm64: Arm64Fixtures | { missing: string } | undefined;

/**
 * The arm64 guest fixtures (EXECENV_QEMU_KERNEL_ARM64 for the kernel, else each built and cached by
 * its tools/fixtures script), or why they cannot be had: no qemu-system-aarch64 on the PATH, or a
 * fixture script that failed (arm64 missing from apt's architectures, say).
 */
export function arm64Fixtures(): Arm64Fixtures | { missing: string } {
  arm64 ??= findArm64Fixtures();
  return arm64;
}

function findArm64Fixtures(): Arm64Fixtures | { missing: string } {
  try {
    execFileSync('qemu-system-aarch64', ['--version'], { stdio: 'ignore' });
  } catch {
    return {
      missing: 'qemu-system-aarch64 is not installed (apt-get install qemu-system-arm; see tools/setup-host.sh)',
    };
  }
  const build = (script: string) =>
    execFileSync('bash', [fileURLToPath(new URL(`../../tools/fixtures/${script}`, import.meta.url))], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    })
      .trim()
      .split('\n')
      .at(-1)!;
  try {
    return {
      kernel: process.env.EXECENV_QEMU_KERNEL_ARM64 ?? build('qemu-kernel-arm64.sh'),
      busybox: build('busybox-static-arm64.sh'),
      rootfs: build('busybox-rootfs-arm64.sh'),
    };
  } catch (err) {
    const stderr = String((err as { stderr?: unknown }).stderr ?? '').trim();
    return { missing: `the arm64 fixtures cannot be built: ${stderr || (err as Error).message}` };
  }
}
