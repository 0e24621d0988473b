import { execFileSync } from 'node:child_process';
import { chownSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRunner } from '@execenv/core';
import { describeConformance } from '@execenv/core/conformance';
import { ID_LABEL, PodmanCli, PodmanDriver } from '@execenv/podman';
import { afterAll, describe, it } from 'vitest';
import { busyboxTarball, busyboxTarballWithSymlinks, removeBusyboxVariants } from './fixtures.js';

// Rootless podman as the unprivileged user execenv-e2e (tools/setup-host.sh
// creates it with subordinate ids): every podman command runs as that user,
// with a HOME and XDG_RUNTIME_DIR of its own made here, so its containers
// live in a user namespace whose root is that user.
const USER = 'execenv-e2e';

function unprivilegedIds(): { uid: number; gid: number } | string {
  if (process.getuid?.() !== 0) return 'switching to an unprivileged user needs root';
  try {
    const uid = Number(execFileSync('id', ['-u', USER], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', USER], { encoding: 'utf8' }).trim());
    return { uid, gid };
  } catch {
    return `no user ${USER}: run tools/setup-host.sh`;
  }
}

const ids = unprivilegedIds();
const skipReason = typeof ids === 'string' ? ids : undefined;
if (skipReason) console.log(`skipping rootless podman: ${skipReason}`);

function userDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  if (typeof ids !== 'string') chownSync(dir, ids.uid, ids.gid);
  return dir;
}

const home = userDir('execenv-podman-home-');
const runtime = userDir('execenv-podman-xdg-');
const runner =
  typeof ids === 'string'
    ? undefined
    : createRunner({ sudo: ['setpriv', `--reuid=${ids.uid}`, `--regid=${ids.gid}`, '--clear-groups', '--'] });
const env = { HOME: home, XDG_RUNTIME_DIR: runtime };

afterAll(async () => {
  await removeBusyboxVariants();
  if (runner) {
    // Removes what the user's podman stored (files its subordinate ids own), then the directories.
    await new PodmanCli({ runner, env }).run(['system', 'reset', '--force'], { check: false });
  }
  rmSync(home, { recursive: true, force: true });
  rmSync(runtime, { recursive: true, force: true });
}, 120_000);

if (skipReason || !runner) {
  describe('podman, rootless as an unprivileged user', () => {
    it.skip(`skipped: ${skipReason}`, () => {});
  });
} else {
  describeConformance({
    name: `podman, rootless as ${USER} with subordinate ids, busybox rootfs`,
    driver: new PodmanDriver({ runner, env }),
    spec: { image: busyboxTarball() },
    imageWithSymlinks: async (links) => ({ image: await busyboxTarballWithSymlinks(links) }),
    backendResources: async (id) =>
      (
        await new PodmanCli({ runner, env }).run([
          'ps',
          '--all',
          '--filter',
          `label=${ID_LABEL}=${id}`,
          '--format',
          '{{.Names}}',
        ])
      ).stdout
        .split('\n')
        .filter(Boolean),
    skip: {
      mounts:
        'the suite makes its host directories as root with mode 0700, which the unprivileged podman user cannot open; conformance-podman runs it rootful',
      'deep-tree-close':
        'run by conformance-podman against rootful storage; rootless, the 2100 process starts on overlayfs outlast the check (over 2 minutes)',
      'gc-after-kill':
        'the owner process builds the driver from JSON arguments, and this driver needs a runner that switches user',
    },
  });
}
