import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { hostArch } from '@execenv/core/driver';

/** Debian architectures the agent is built for, with the compiler the build uses for each. */
export const AGENT_COMPILERS: Readonly<Record<string, string>> = {
  amd64: 'gcc',
  arm64: 'aarch64-linux-gnu-gcc',
  armhf: 'arm-linux-gnueabihf-gcc',
  i386: 'i686-linux-gnu-gcc',
  ppc64el: 'powerpc64le-linux-gnu-gcc',
  s390x: 's390x-linux-gnu-gcc',
  riscv64: 'riscv64-linux-gnu-gcc',
};

/**
 * AgentBinaryError says the agent binary for an architecture is missing or corrupt, and how to get it.
 *
 * @example
 * ```ts
 * import { AgentBinaryError, agentBinaryPath } from '@execenv/agent';
 *
 * try {
 *   await agentBinaryPath('riscv64');
 * } catch (err) {
 *   if (!(err instanceof AgentBinaryError)) throw err;
 *   console.error(`no usable agent for ${err.arch}: ${err.message}`); // err.code is 'AGENT_BINARY'
 * }
 * ```
 */
export class AgentBinaryError extends Error {
  /** The stable code of this error. */
  readonly code = 'AGENT_BINARY';
  /** The Debian architecture asked for. */
  readonly arch: string;

  constructor(arch: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'AgentBinaryError';
    this.arch = arch;
  }
}

/**
 * agentArchOf names a Node.js architecture (`process.arch`) the Debian way.
 * @throws AgentBinaryError for an architecture the agent is not built for.
 *
 * @example
 * ```ts
 * import { agentArchOf, agentBinaryPath } from '@execenv/agent';
 *
 * agentArchOf('x64'); // 'amd64'
 * agentArchOf('arm'); // 'armhf'
 * const agent = await agentBinaryPath(agentArchOf()); // the host's own agent
 * ```
 */
export function agentArchOf(nodeArch: string = process.arch): string {
  try {
    return hostArch(nodeArch);
  } catch {
    throw new AgentBinaryError(nodeArch, `execenv: no agent binary is built for the ${nodeArch} architecture`);
  }
}

const verified = new Map<string, string>();

/**
 * agentBinaryPath gives the path of the agent binary for a Debian
 * architecture (the host's by default), checked against the SHA256SUMS the
 * build wrote. `EXECENV_AGENT_PATH`, when set, is returned as is, unchecked.
 * @throws AgentBinaryError when the binary is missing or its checksum does not match.
 *
 * @example
 * ```ts
 * import { spawn } from 'node:child_process';
 * import { AgentSession, agentBinaryPath } from '@execenv/agent';
 *
 * const agent = spawn(await agentBinaryPath(), ['--stdio'], { stdio: ['pipe', 'pipe', 'inherit'] });
 * const session = await AgentSession.over(agent.stdout, agent.stdin);
 * const arm64 = await agentBinaryPath('arm64'); // to copy into an arm64 VM's image
 * ```
 */
export async function agentBinaryPath(arch?: string): Promise<string> {
  const override = process.env.EXECENV_AGENT_PATH;
  if (override) return override;
  arch ??= agentArchOf();
  const compiler = AGENT_COMPILERS[arch];
  if (!compiler)
    throw new AgentBinaryError(
      arch,
      `execenv: unknown agent architecture ${arch} (known: ${Object.keys(AGENT_COMPILERS).join(', ')})`,
    );
  return checkedAgentBinary(binariesDir(), arch);
}

/**
 * checkedAgentBinary gives `<binDir>/<arch>/execenv-agent` once it matches
 * `<binDir>/SHA256SUMS`; a match is remembered until the file's mtime or size
 * changes.
 * @throws AgentBinaryError when the binary is missing or its checksum does not match.
 */
export async function checkedAgentBinary(binDir: string, arch: string): Promise<string> {
  const compiler = AGENT_COMPILERS[arch] ?? `${arch}-gcc`;
  const path = `${binDir}/${arch}/execenv-agent`;
  const info = await stat(path).catch(() => undefined);
  if (!info?.isFile()) throw new AgentBinaryError(arch, `${missingMessage(arch, path)}${howToBuild(arch, compiler)}`);
  const stamp = `${info.mtimeMs}:${info.size}`;
  if (verified.get(path) === stamp) return path;
  const expected = await expectedSum(`${binDir}/SHA256SUMS`, `${arch}/execenv-agent`);
  if (!expected)
    throw new AgentBinaryError(
      arch,
      `execenv: ${binDir}/SHA256SUMS lists no ${arch}/execenv-agent${howToBuild(arch, compiler)}`,
    );
  const actual = await sha256(path);
  if (actual !== expected)
    throw new AgentBinaryError(
      arch,
      `execenv: the agent binary ${path} does not match its checksum in SHA256SUMS${howToBuild(arch, compiler)}`,
    );
  verified.set(path, stamp);
  return path;
}

/** The package's `dist/bin`, whether this module runs compiled from dist/ or as source from src/ (tests). */
function binariesDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  return basename(here) === 'src' ? `${dirname(here)}/dist/bin` : `${here}/bin`;
}

function missingMessage(arch: string, path: string): string {
  return `execenv: the agent binary for ${arch} is missing (${path})`;
}

function howToBuild(arch: string, compiler: string): string {
  const apt = compiler === 'gcc' ? 'gcc libc6-dev' : `gcc-${compiler.replace(/-gcc$/, '')}`;
  return (
    `: the package build (npm run build -w @execenv/agent) produces it with the ${arch} compiler ${compiler} ` +
    `(apt-get install ${apt}); or point EXECENV_AGENT_PATH at an agent binary`
  );
}

async function expectedSum(sumsPath: string, name: string): Promise<string | undefined> {
  const text = await readFile(sumsPath, 'utf8').catch(() => '');
  for (const line of text.split('\n')) {
    const match = /^([0-9a-f]{64}) [ *](.+)$/.exec(line.trim());
    if (match?.[2] === name) return match[1];
  }
  return undefined;
}

async function sha256(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
