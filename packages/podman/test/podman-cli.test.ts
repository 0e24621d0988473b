import { describe, expect, it } from 'vitest';
import { PodmanCli } from '../src/podman-cli.js';
import { ScriptedRunner } from './scripted-runner.js';

describe('PodmanCli', () => {
  it('puts the connection flags before the subcommand', async () => {
    const runner = new ScriptedRunner();
    const cli = new PodmanCli({
      runner,
      url: 'ssh://builder@build-host/run/podman/podman.sock',
      identity: '/home/b/.ssh/id_ed25519',
    });
    await cli.run(['ps']);
    expect(runner.argvs).toEqual([
      [
        'podman',
        '--url',
        'ssh://builder@build-host/run/podman/podman.sock',
        '--identity',
        '/home/b/.ssh/id_ed25519',
        'ps',
      ],
    ]);
    expect(cli.remote).toBe(true);
  });

  it('runs with the fixed host PATH and C locale plus the configured environment only', async () => {
    const runner = new ScriptedRunner();
    const cli = new PodmanCli({ runner, connection: 'builder', env: { CONTAINER_HOST: 'unix:///x.sock' } });
    await cli.run(['info']);
    expect(runner.ran[0]?.argv).toEqual(['podman', '--connection', 'builder', 'info']);
    expect(runner.ran[0]?.opts?.env).toEqual({
      PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      LC_ALL: 'C',
      CONTAINER_HOST: 'unix:///x.sock',
    });
  });

  it('is local without a URL, a connection or CONTAINER_HOST', () => {
    expect(new PodmanCli({ runner: new ScriptedRunner() }).remote).toBe(false);
    expect(new PodmanCli({ runner: new ScriptedRunner(), env: { CONTAINER_HOST: 'unix:///s' } }).remote).toBe(true);
  });
});
