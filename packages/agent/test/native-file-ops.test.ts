import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const SCRIPT = fileURLToPath(new URL('./native/run-file-op-tests.sh', import.meta.url));
const asRoot = process.getuid?.() === 0;

// The agent's file operations in C, driven one by one without the event loop: modes, owners, devices,
// xattrs, hostile archives and a tree deeper than PATH_MAX. Owners and devices need root.
describe.skipIf(!asRoot)('agent file operations (native, as root)', () => {
  it('passes every check of run-file-op-tests.sh', async () => {
    const { stdout } = await run('bash', [SCRIPT], {
      env: { ...process.env, PERF_MB: '20' },
      maxBuffer: 16 << 20,
    }).catch((err: { stdout?: string; stderr?: string }) => {
      throw new Error(`run-file-op-tests.sh failed:\n${err.stdout ?? ''}\n${err.stderr ?? ''}`);
    });
    const failed = stdout.split('\n').filter((l) => l.startsWith('FAIL'));
    expect(failed).toEqual([]);
    expect(stdout.split('\n').filter((l) => l.startsWith('ok')).length).toBeGreaterThanOrEqual(70);
    expect(stdout).toMatch(/^0 failed$/m);
  }, 300_000);
});
