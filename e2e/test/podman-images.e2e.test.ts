import { hostRunner } from '@execenv/core';
import { PodmanDriver, ROOTFS_LABEL } from '@execenv/podman';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { expectIndexThroughConfig } from './image-config-fixtures.js';

// An index: image reaching a real podman through the shared configuration: a
// signed lxc-download server on loopback, named only in a config file.
const probe = await new PodmanDriver().probe();
if (!probe.available) console.warn(`podman images: skipped, podman is not available here: ${probe.reason}`);

let importsBefore: Set<string>;

/** The ids of the images the driver imported from root filesystem tarballs. */
async function rootfsImports(): Promise<Set<string>> {
  const r = await hostRunner().run(['podman', 'images', '--filter', `label=${ROOTFS_LABEL}`, '--format', '{{.Id}}']);
  return new Set(r.stdout.split('\n').filter((l) => l !== ''));
}

beforeAll(async () => {
  if (probe.available) importsBefore = await rootfsImports();
});

afterAll(async () => {
  if (!probe.available) return;
  // Only the imports this file made, and only when no container uses them (rmi without --force refuses).
  for (const id of await rootfsImports())
    if (!importsBefore.has(id)) await hostRunner().run(['podman', 'rmi', id], { check: false });
}, 60_000);

describe.skipIf(!probe.available)('podman images through the shared configuration', () => {
  it("open('podman', { image: 'index:…' }) takes its server, key and cache from the config file", async () => {
    // rootfs.tar.xz and meta.tar.xz downloaded and verified, and the converted tarball, all in the configured cache.
    await expectIndexThroughConfig('podman', 3);
  }, 180_000);
});
