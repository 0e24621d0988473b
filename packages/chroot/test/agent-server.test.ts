import { FakeRunner } from '@execenv/core/testing';
import { describe, expect, it } from 'vitest';
import { startAgentServer } from '../src/agent-server.js';

const options = {
  binary: '/pkg/bin/amd64/execenv-agent',
  enter: [],
  root: '/state/root',
  linux32: false,
  netns: undefined,
  socket: '/state/agent.sock',
  owner: undefined,
  binds: [],
};

describe('startAgentServer', () => {
  it('starts the agent with a fixed PATH and resolves once it prints ready', async () => {
    const runner = new FakeRunner();
    const started = startAgentServer(runner, options);
    const agent = runner.spawned[0]!;
    expect(agent.argv).toEqual([
      '/pkg/bin/amd64/execenv-agent',
      '--root',
      '/state/root',
      '--listen',
      '/state/agent.sock',
    ]);
    expect(agent.opts?.env).toEqual({ PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' });
    agent.stdout.write('rea');
    agent.stdout.write('dy\n');
    const server = await started;
    // Stopping closes the agent's stdin, on which it kills everything inside and exits.
    const stopped = server.stop();
    await new Promise((r) => setImmediate(r));
    expect(agent.stdin.writableEnded).toBe(true);
    agent.exit({ exitCode: 0, signal: null });
    await stopped;
  });

  it('fails with DRIVER_UNAVAILABLE quoting the agent when it exits before ready', async () => {
    const runner = new FakeRunner();
    const started = startAgentServer(runner, options);
    const agent = runner.spawned[0]!;
    agent.stderr.write('execenv-agent: cannot pivot into /state/root: Invalid argument\n');
    await new Promise((r) => setImmediate(r));
    agent.exit({ exitCode: 1, signal: null });
    await expect(started).rejects.toMatchObject({
      code: 'DRIVER_UNAVAILABLE',
      message: expect.stringContaining('cannot pivot into /state/root'),
    });
  });
});
