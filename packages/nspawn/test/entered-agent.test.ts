import { FakeRunner } from '@execenv/core/testing';
import { describe, expect, it } from 'vitest';
import { startEnteredAgent } from '../src/entered-agent.js';

describe('startEnteredAgent', () => {
  it('enters every namespace of the init once, with commands kept in the container’s pid namespace', async () => {
    const runner = new FakeRunner();
    const started = startEnteredAgent(runner, '/usr/bin/nsenter', 4301, 'execenv-unit');
    const agent = runner.spawned[0]!;
    expect(agent.argv).toEqual([
      '/usr/bin/nsenter',
      '--target=4301',
      '--all',
      '/run/execenv-agent',
      '--listen',
      '/run/execenv/agent.sock',
    ]);
    expect(agent.opts?.env).toEqual({
      PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      EXECENV_AGENT_TREE: 'subreaper',
    });
    agent.stdout.write('ready\n');
    const entered = await started;
    const stopped = entered.stop();
    await new Promise((r) => setImmediate(r));
    expect(agent.stdin.writableEnded).toBe(true);
    agent.exit({ exitCode: 0, signal: null });
    await stopped;
  });

  it('fails with DRIVER_UNAVAILABLE quoting nsenter when the agent does not start', async () => {
    const runner = new FakeRunner();
    const started = startEnteredAgent(runner, '/usr/bin/nsenter', 4301, 'execenv-unit');
    const agent = runner.spawned[0]!;
    agent.stderr.write('nsenter: failed to execute /run/execenv-agent: No such file or directory\n');
    await new Promise((r) => setImmediate(r));
    agent.exit({ exitCode: 127, signal: null });
    await expect(started).rejects.toMatchObject({
      code: 'DRIVER_UNAVAILABLE',
      message: expect.stringContaining('failed to execute /run/execenv-agent'),
    });
  });
});
