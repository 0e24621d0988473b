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
