import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { AgentSession, agentBinaryPath } from '@execenv/agent';
import { DriverUnavailableError, ExecenvError } from '@execenv/core';
import { archNames, DEFAULT_PATH } from '@execenv/core/driver';
import type { LxdClient } from './lxd-client.js';
import { type LxdExecProcess, startExec } from './lxd-exec.js';
import { LxdFiles } from './lxd-files.js';

/**
 * Where the agent binary is inside an instance: /dev is a tmpfs of the
 * container's own (devtmpfs in a VM), so the binary, mounted there or
 * written there, never lands in the instance's root filesystem and a
 * published image does not carry it.
 */
export const AGENT_PATH = '/dev/.execenv-agent';

/**
 * Size of a container's /dev tmpfs where the agent binary is written into
 * it: LXC's default (500 kB) does not hold the binary (up to 1.1 MB), so
 * the profile sets this.
 */
export const DEV_TMPFS_BYTES = 16 << 20;

/** Name of the profile device that shows the host's agent binary at AGENT_PATH. */
export const AGENT_DEVICE = 'execenv-agent';

/**
 * How the agent binary gets into an instance: `mount` shows the host's own
 * binary read-only at AGENT_PATH through a disk device (nothing is copied;
 * a daemon on this host and an unprivileged container only), `write` copies
 * it through the files API once the instance runs.
 */
export type AgentDelivery = { kind: 'mount'; binary: string } | { kind: 'write' };

/**
 * The disk device that bind-mounts the host's agent binary read-only at
 * AGENT_PATH: the daemon mounts it before the container's init runs, and
 * in an unprivileged container the read-only flag is locked, so commands
 * inside can neither write through to the host's file nor make it writable.
 * There the file shows as owned by nobody, and stays readable and executable.
 */
export function agentDevice(binary: string): Record<string, string> {
  return { type: 'disk', source: binary, path: AGENT_PATH, readonly: 'true' };
}

/**
 * The host's own agent binary, or DriverUnavailableError saying why there
 * is none. A container runs on the host's kernel, so this binary runs in it
 * whatever the architecture of its image.
 */
export async function hostAgentBinary(): Promise<string> {
  // EXECENV_AGENT_PATH may be relative; the daemon takes absolute sources only.
  return resolve(
    await agentBinaryPath().catch((err: unknown) => {
      throw new DriverUnavailableError('lxd', `no agent binary to mount: ${(err as Error).message}`, { cause: err });
    }),
  );
}

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
 * unless the binary is mounted at AGENT_PATH already, the binary of the
 * instance's architecture is written there through the files API; then one
 * long-lived exec runs it, whose stdin and stdout websockets carry the
 * agent's protocol. Every later command is a child of that agent (one fork
 * instead of a daemon-side exec), file operations resolve paths inside the
 * instance, and the agent kills whole process trees.
 */
export async function startLxdAgent(
  client: LxdClient,
  instance: string,
  delivery: AgentDelivery = { kind: 'write' },
): Promise<LxdAgentLink> {
  const unavailable = (detail: string, cause?: unknown) =>
    new DriverUnavailableError('lxd', `the agent of instance ${instance} did not start: ${detail}`, {
      cause,
    });
  if (delivery.kind === 'write') await writeAgent(client, instance, unavailable);
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

/** Writes the agent binary of the instance's architecture to AGENT_PATH through the files API. */
async function writeAgent(
  client: LxdClient,
  instance: string,
  unavailable: (detail: string, cause?: unknown) => Error,
): Promise<void> {
  const info = await client.get<{ architecture?: string }>(`/1.0/instances/${encodeURIComponent(instance)}`);
  const arch = archNames(info.architecture ?? '', 'architecture').debian;
  const binary = await agentBinaryPath(arch).catch((err: unknown) => {
    throw unavailable((err as Error).message, err);
  });
  // Read whole (about 1 MB): the request then says its length, and the bytes are the ones checked.
  await new LxdFiles(client, instance).write(AGENT_PATH, await readFile(binary), { mode: 0o755, uid: 0, gid: 0 });
}
