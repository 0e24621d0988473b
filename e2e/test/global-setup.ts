import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const FIXTURES = fileURLToPath(new URL('../../tools/fixtures/all.sh', import.meta.url));

/**
 * Makes sure the fixture root filesystems exist (built and cached by
 * tools/fixtures) and passes their paths to the tests.
 */
export default function setup(): void {
  if (process.env.EXECENV_FIXTURE_BUSYBOX && process.env.EXECENV_FIXTURE_MINBASE && process.env.EXECENV_FIXTURE_SYSTEMD)
    return;
  const out = execFileSync('bash', [FIXTURES], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  for (const line of out.split('\n')) {
    const m = /^(busybox|minbase|systemd)=(.+)$/.exec(line.trim());
    if (m) process.env[`EXECENV_FIXTURE_${m[1]!.toUpperCase()}`] ??= m[2];
  }
  if (!process.env.EXECENV_FIXTURE_BUSYBOX || !process.env.EXECENV_FIXTURE_MINBASE)
    throw new Error(`tools/fixtures/all.sh did not print busybox= and minbase= lines:\n${out}`);
}
