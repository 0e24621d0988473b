import { createReadStream } from 'node:fs';
import { AgentSession, agentBinaryPath } from '@execenv/agent';
import { DriverUnavailableError, ExecenvError } from '@execenv/core';
import { archNames, DEFAULT_PATH } from '@execenv/core/driver';
import type { LxdClient } from './lxd-client.js';
import { type LxdExecProcess, startExec } from './lxd-exec.js';
import { LxdFiles } from './lxd-files.js';

/**
 * Where the agent binary goes inside an instance: /dev is a tmpfs of the
 * container's own (devtmpfs in a VM), so the binary never lands in the
 * instance's root filesystem and a published image does not carry it.
 */
export const AGENT_PATH = '/dev/.execenv-agent';

/**
 * Size of a container's /dev tmpfs: LXC's default (500 kB) does not hold
 * the agent binary (up to 1.1 MB), so the profile sets this.
 */
export const DEV_TMPFS_BYTES = 16 << 20;

/** A running agent of one instance and the session on its stdin and stdout. */
export interface LxdAgentLink {
  readonly session: AgentSession;
  /** Ends the session and the exec that carries it. */
  close(): Promise<void>;
}

/** How long an agent has to answer its HELLO after its exec started. */
const HELLO_MS = 30_000;

/**
 * Starts the execenv agent inside a running instance and connects to it:
 * the binary of the instance's architecture is written to AGENT_PATH
 * through the files API, then run by one long-lived exec whose stdin and
 * stdout websockets carry the agent's protocol. Every later command is a
 * child of that agent (one fork instead of a daemon-side exec), file
 * operations resolve paths inside the instance, and the agent kills whole
 * process trees.
 */
export async function startLxdAgent(client: LxdClient, instance: string): Promise<LxdAgentLink> {
  const unavailable = (detail: string, cause?: unknown) =>
    new DriverUnavailableError('lxd', `the agent of instance ${instance} did not start: ${detail}`, {
      cause,
    });
  const info = await client.get<{ architecture?: string }>(`/1.0/instances/${encodeURIComponent(instance)}`);
  const arch = archNames(info.architecture ?? '', 'architecture').debian;
  const binary = await agentBinaryPath(arch).catch((err: unknown) => {
    throw unavailable((err as Error).message, err);
  });
  await new LxdFiles(client, instance).write(AGENT_PATH, createReadStream(binary), { mode: 0o755, uid: 0, gid: 0 });
  let proc: LxdExecProcess;
  try {
    proc = await startExec(client, instance, {
      command: [AGENT_PATH, '--stdio'],
      environment: { PATH: DEFAULT_PATH },
      cwd: '/',
      user: 0,
      group: 0,
      stdin: true,
    });
  } catch (err) {
    throw unavailable(`exec of ${AGENT_PATH} failed: ${(err as Error).message}`, err);
  }
  if (!proc.stdin) throw new ExecenvError('TRANSPORT', `execenv: the exec of the agent in ${instance} has no stdin`);
  let stderr = '';
  proc.stderr.on('data', (c: Buffer) => {
    if (stderr.length < 4096) stderr += c.toString();
  });
  const exited = proc.exited.then(
    (r) => r,
    (err: unknown) => ({ exitCode: null, signal: String(err) }),
  );
  let timer: NodeJS.Timeout | undefined;
  const session = await Promise.race([
    AgentSession.over(proc.stdout, proc.stdin),
    exited.then((r) => {
      throw unavailable(`it ended (${r.exitCode ?? r.signal}): ${stderr.trim()}`);
    }),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(unavailable(`no answer in ${HELLO_MS} ms`)), HELLO_MS);
    }),
  ])
    .catch(async (err: unknown) => {
      proc.kill('SIGKILL');
      proc.stdin?.destroy();
      throw err;
    })
    .finally(() => clearTimeout(timer));
  return {
    session,
    close: async () => {
      // Not waited for: the instance goes next, and its deletion ends the exec and its websockets.
      session.close();
      proc.stdin?.end();
    },
  };
}
