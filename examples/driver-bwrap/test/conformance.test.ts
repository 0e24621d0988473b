import { fileURLToPath } from 'node:url';
import { describeConformance } from '@execenv/core/conformance';
import { afterAll, describe, it } from 'vitest';
import { BwrapDriver } from '../src/index.js';
import { imageWithSymlinks, removeImagesWithSymlinks } from './image-with-symlinks.js';

// A root filesystem tarball with busybox-level tools (sh, cat, id, head, sleep, ln).
const image = process.env.EXECENV_TEST_IMAGE;
const driver = new BwrapDriver();
const availability = await driver.probe();

if (!image || !availability.available) {
  const why = !image ? 'set EXECENV_TEST_IMAGE to a rootfs tarball' : availability.reason;
  describe('execenv conformance: bwrap', () => {
    it.skip(`needs a real sandbox: ${why}`, () => {});
  });
} else {
  afterAll(removeImagesWithSymlinks);
  describeConformance({
    name: 'bwrap',
    driver,
    spec: { image },
    // An image whose /dev, /proc or /tmp point at host paths must not make the sandbox touch them.
    imageWithSymlinks: async (links) => ({ image: await imageWithSymlinks(image, links) }),
    // The owner process imports the built driver: run `npm run build` first.
    ownerProcess: { module: fileURLToPath(new URL('../dist/index.js', import.meta.url)), exportName: 'BwrapDriver' },
  });
}
