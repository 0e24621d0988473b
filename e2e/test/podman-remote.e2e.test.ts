import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { access } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hostRunner } from '@execenv/core';
import { describeConformance } from '@execenv/core/conformance';
import { ID_LABEL, PodmanDriver, PUBLISHED_LABEL } from '@execenv/podman';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { busyboxTarball } from './fixtures.js';

// A podman service on a unix socket this file starts: the driver speaks to it
// as to a remote podman (--url), copying the agent into each container and
// running it through one long-lived `podman exec -i`.
const dir = mkdtempSync(join(tmpdir(), 'execenv-podman-remote-'));
const socket = join(dir, 'podman.sock');
const url = `unix://${socket}`;
let service: ChildProcess | undefined;

/**
 * The host's containers.conf with `exit_command_delay = 0`: a podman service
 * keeps the two conmon processes of each API exec session for that long after
 * the session ended (5 minutes by default; podman issue 20415), which the
 * leak checks would count against the closed environment.
 */
function serviceConf(): string {
  const system = readFileSync('/etc/containers/containers.conf', 'utf8');
  const conf = /^\[engine\][ \t]*$/m.test(system)
    ? system.replace(/^\[engine\][ \t]*$/m, '[engine]\nexit_command_delay = 0')
    : `${system}\n[engine]\nexit_command_delay = 0\n`;
  const path = join(dir, 'containers.conf');
  writeFileSync(path, conf);
  return path;
}

beforeAll(async () => {
  service = spawn('podman', ['system', 'service', '--time=0', url], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: { ...process.env, CONTAINERS_CONF: serviceConf() },
  });
  for (let i = 0; i < 500; i++) {
    if (
      await access(socket).then(
        () => true,
        () => false,
      )
    )
      return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`podman system service did not create ${socket}`);
});
afterAll(async () => {
  if (service && service.exitCode === null) {
    const exited = new Promise((r) => service!.once('exit', r));
    service.kill('SIGTERM');
    await exited;
  }
  rmSync(dir, { recursive: true, force: true });
});

const driver = new PodmanDriver({ url });
afterAll(removePodmanImages, 120_000);

/**
 * Removes what this file left in podman's storage: the images the
 * capabilities check published, and the imports of the fixture tarballs.
 */
async function removePodmanImages(): Promise<void> {
  const runner = hostRunner();
  const published = await runner.run([
    'podman',
    'images',
    '--filter',
    `label=${PUBLISHED_LABEL}`,
    '--format',
    '{{.Repository}}:{{.Tag}}',
  ]);
  const ours = published.stdout.split('\n').filter((n) => n.startsWith('localhost/execenv-conformance-'));
  if (ours.length > 0) await runner.run(['podman', 'rmi', ...ours]);
  await new PodmanDriver().pruneImages();
}

describe('podman driver, remote podman over a unix socket', () => {
  it('reports a remote podman with the exec transport', async () => {
    const probe = await driver.probe();
    expect(probe).toMatchObject({ available: true, details: { remote: 'true', transport: 'exec' } });
  });

  it('opens through the service: commands are children of the container, files go both ways', async () => {
    const env = await driver.open({ image: busyboxTarball() }, { closeOnSignal: false });
    try {
      const listed = await hostRunner().run([
        'podman',
        'ps',
        '--filter',
        `label=${ID_LABEL}=${env.id}`,
        '--format',
        '{{.Names}}',
      ]);
      expect(listed.stdout.trim()).toBe(env.id);
      await env.push(new TextEncoder().encode('through the service\n'), '/tmp/x');
      expect((await env.exec(['cat', '/tmp/x'])).stdout).toBe('through the service\n');
      // PID 1 is the container's own agent; the session's agent runs beside it.
      expect((await env.exec(['cat', '/proc/1/cmdline'])).stdout.split('\0')[0]).toBe('/.execenv/agent');
    } finally {
      await env.close();
    }
    const left = await hostRunner().run([
      'podman',
      'ps',
      '--all',
      '--filter',
      `label=${ID_LABEL}=${env.id}`,
      '--quiet',
    ]);
    expect(left.stdout.trim()).toBe('');
  });
});

describeConformance({
  name: 'podman, remote over a unix socket, busybox rootfs',
  driver,
  spec: { image: busyboxTarball() },
  skip: {
    'deep-tree-close': 'run by conformance-podman against the same container storage; about a minute on overlayfs',
    'file-race': 'run by conformance-podman: the agent resolves paths the same way whichever way it is reached',
  },
  backendResources: async (id) =>
    (
      await hostRunner().run(['podman', 'ps', '--all', '--filter', `label=${ID_LABEL}=${id}`, '--format', '{{.Names}}'])
    ).stdout
      .split('\n')
      .filter(Boolean),
});
