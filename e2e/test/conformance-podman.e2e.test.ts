import { hostRunner } from '@execenv/core';
import { describeConformance } from '@execenv/core/conformance';
import { ID_LABEL, PodmanDriver, PUBLISHED_LABEL } from '@execenv/podman';
import { afterAll, describe, expect, it } from 'vitest';
import { busyboxTarball, busyboxTarballWithSymlinks, minbaseTarball, removeBusyboxVariants } from './fixtures.js';

afterAll(async () => {
  await removeBusyboxVariants();
  await removePodmanImages();
}, 120_000);

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

const imageWithSymlinks = async (links: Record<string, string>) => ({ image: await busyboxTarballWithSymlinks(links) });

/** What podman itself still holds for an environment: containers and networks labelled with its id. */
async function backendResources(id: string): Promise<string[]> {
  const runner = hostRunner();
  const filter = `label=${ID_LABEL}=${id}`;
  const containers = await runner.run(['podman', 'ps', '--all', '--filter', filter, '--format', '{{.Names}}']);
  const networks = await runner.run(['podman', 'network', 'ls', '--filter', filter, '--format', '{{.Name}}']);
  return [
    ...containers.stdout
      .split('\n')
      .filter(Boolean)
      .map((n) => `container ${n}`),
    ...networks.stdout
      .split('\n')
      .filter(Boolean)
      .map((n) => `network ${n}`),
  ];
}

// The same suite every driver runs, against real rootful podman on this host (runc, see tools/setup/podman.sh).
describeConformance({
  name: 'podman, rootful, busybox rootfs',
  driver: new PodmanDriver(),
  spec: { image: busyboxTarball() },
  imageWithSymlinks,
  backendResources,
  ownerProcess: { module: '@execenv/podman', exportName: 'PodmanDriver' },
});

describeConformance({
  name: 'podman, rootful, Debian bookworm minbase',
  driver: new PodmanDriver(),
  spec: { image: minbaseTarball() },
  backendResources,
  skip: {
    'deep-tree-close':
      'run on busybox above, through the same container storage; here every mkdir is a process start on overlayfs (about 2 minutes)',
  },
});

describe('podman networks', () => {
  const driver = new PodmanDriver();

  it("nat gives the container podman's default network, beside lo", async () => {
    const env = await driver.open({ image: busyboxTarball(), network: 'nat' }, { closeOnSignal: false });
    try {
      const links = await env.exec(['cat', '/proc/net/dev'], { check: true });
      const names = links.stdout
        .split('\n')
        .slice(2)
        .map((l) => l.split(':')[0]!.trim())
        .filter(Boolean);
      expect(names).toContain('lo');
      expect(names.length).toBeGreaterThan(1);
      expect(env.capabilities.has('network')).toBe(true);
    } finally {
      await env.close();
    }
  });

  it('privateNetwork makes a labelled network for the environment and removes it on close', async () => {
    const env = await driver.open(
      { image: busyboxTarball(), network: 'nat', driverOptions: { privateNetwork: true } },
      { closeOnSignal: false },
    );
    try {
      expect(await backendResources(env.id)).toEqual([`container ${env.id}`, `network ${env.id}`]);
      const route = await env.exec(['cat', '/proc/net/route'], { check: true });
      expect(route.stdout.split('\n').some((l) => l.split(/\s+/)[1] === '00000000')).toBe(true);
    } finally {
      await env.close();
    }
    expect(await backendResources(env.id)).toEqual([]);
  });
});
