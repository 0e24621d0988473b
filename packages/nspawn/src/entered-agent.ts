import { DriverUnavailableError, type ProcessRunner } from '@execenv/core';
import { HOST_PATH } from '@execenv/core/driver';
import { agentListenArgv } from './nspawn-args.js';

/** An agent entered into a booted container's namespaces. */
export interface EnteredAgent {
  /** Stops the agent: its stdin closes, it kills what it runs and exits. */
  stop(): Promise<void>;
}

/**
 * The argv that enters every namespace of the container's init and starts
 * the agent there, once for the environment's whole life.
 */
export function enterAgentArgv(nsenter: string, initPid: number): string[] {
  return [nsenter, `--target=${initPid}`, '--all', ...agentListenArgv()];
}

/**
 * Starts the agent inside a booted container and waits until it listens.
 * Commands run in the container's own pid namespace (`tree=subreaper`), not
 * in one of their own: systemd and D-Bus refuse peers whose pid they cannot
 * see, and a command there must be able to use systemctl.
 */
export async function startEnteredAgent(
  runner: ProcessRunner,
  nsenter: string,
  initPid: number,
  envId: string,
): Promise<EnteredAgent> {
  const argv = enterAgentArgv(nsenter, initPid);
  const proc = runner.spawn(argv, {
    env: { PATH: HOST_PATH, EXECENV_AGENT_TREE: 'subreaper' },
    stdin: 'pipe',
    stdout: 'pipe',
    stderr: 'pipe',
  });
  let stderr = '';
  const collect = (c: Buffer) => {
    stderr = (stderr + c.toString('utf8')).slice(-4096);
  };
  proc.stderr?.on('data', collect);
  const ready = await new Promise<boolean>((resolve) => {
    let out = '';
    proc.stdout?.on('data', (c: Buffer) => {
      out += c.toString('utf8');
      if (out.includes('ready\n')) resolve(true);
    });
    proc.exited.then(
      () => resolve(false),
      () => resolve(false),
    );
  });
  if (!ready) {
    await proc.exited.catch(() => {});
    throw new DriverUnavailableError(
      'nspawn',
      `the agent did not start in ${envId}: ${stderr.trim() || argv.join(' ')}`,
      {
        envId,
        op: 'open',
      },
    );
  }
  proc.stdout?.resume();
  proc.stderr?.resume();
  return {
    async stop() {
      proc.stdin?.end();
      await proc.exited.catch(() => {});
    },
  };
}
