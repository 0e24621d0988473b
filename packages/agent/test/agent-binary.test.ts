import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { AgentBinaryError, agentArchOf, agentBinaryPath, checkedAgentBinary } from '../src/agent-binary.js';

const saved = process.env.EXECENV_AGENT_PATH;
afterEach(() => {
  if (saved === undefined) delete process.env.EXECENV_AGENT_PATH;
  else process.env.EXECENV_AGENT_PATH = saved;
});

const distBin = fileURLToPath(new URL('../dist/bin/', import.meta.url));
const built = existsSync(`${distBin}amd64/execenv-agent`);

describe('agentBinaryPath', () => {
  it('names Node architectures the Debian way', () => {
    expect(['x64', 'arm64', 'arm', 'ia32', 'ppc64', 's390x', 'riscv64'].map((a) => agentArchOf(a))).toEqual([
      'amd64',
      'arm64',
      'armhf',
      'i386',
      'ppc64el',
      's390x',
      'riscv64',
    ]);
    expect(() => agentArchOf('mips')).toThrow(AgentBinaryError);
  });

  it('returns EXECENV_AGENT_PATH as is', async () => {
    process.env.EXECENV_AGENT_PATH = '/opt/custom/execenv-agent';
    expect(await agentBinaryPath('s390x')).toBe('/opt/custom/execenv-agent');
  });

  it('refuses an unknown architecture', async () => {
    delete process.env.EXECENV_AGENT_PATH;
    await expect(agentBinaryPath('vax')).rejects.toMatchObject({ name: 'AgentBinaryError', code: 'AGENT_BINARY' });
  });

  it.skipIf(!built)('returns the built amd64 binary, checked against SHA256SUMS', async () => {
    delete process.env.EXECENV_AGENT_PATH;
    const path = await agentBinaryPath('amd64');
    expect(path).toBe(`${distBin}amd64/execenv-agent`);
    const { readFile } = await import('node:fs/promises');
    const sum = createHash('sha256')
      .update(await readFile(path))
      .digest('hex');
    expect(await readFile(`${distBin}SHA256SUMS`, 'utf8')).toContain(`${sum}  amd64/execenv-agent`);
  });

  it('checks a binary against SHA256SUMS and says which architecture is missing and how to build it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'agent-bin-'));
    try {
      const missing = await checkedAgentBinary(dir, 'riscv64').catch((e: unknown) => e);
      expect(missing).toBeInstanceOf(AgentBinaryError);
      expect(missing).toMatchObject({ code: 'AGENT_BINARY', arch: 'riscv64' });
      expect((missing as Error).message).toMatch(
        /riscv64 is missing.*npm run build -w @execenv\/agent.*riscv64-linux-gnu-gcc.*gcc-riscv64-linux-gnu/,
      );
      await mkdir(join(dir, 'arm64'));
      await writeFile(join(dir, 'arm64/execenv-agent'), 'binary');
      const sum = createHash('sha256').update('binary').digest('hex');
      await expect(checkedAgentBinary(dir, 'arm64')).rejects.toThrow(/SHA256SUMS lists no arm64/);
      await writeFile(join(dir, 'SHA256SUMS'), `${sum}  arm64/execenv-agent\n`);
      expect(await checkedAgentBinary(dir, 'arm64')).toBe(join(dir, 'arm64/execenv-agent'));
      await writeFile(join(dir, 'arm64/execenv-agent'), 'tampered');
      await expect(checkedAgentBinary(dir, 'arm64')).rejects.toThrow(/does not match its checksum/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
