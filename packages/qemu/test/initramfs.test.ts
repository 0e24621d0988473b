import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { packCpio } from '../src/cpio.js';
import { guestInitramfs, initScript } from '../src/initramfs.js';

const scratch = await mkdtemp(join(tmpdir(), 'execenv-initramfs-test-'));
afterAll(() => rm(scratch, { recursive: true, force: true }));

const shared = join(scratch, 'shared.cpio.gz');

describe('guestInitramfs', () => {
  it('appends the guest configuration as a second archive after the shared one', async () => {
    const base = gzipSync(packCpio([{ type: 'file', path: 'init', content: Buffer.from('#!/bin/sh\n') }]));
    await writeFile(shared, base);
    const out = await guestInitramfs(
      shared,
      {
        binds: [
          { tag: 'execenv0', target: '/mnt/with space', readOnly: false },
          { tag: 'execenv1', target: '/srv/ro', readOnly: true },
        ],
      },
      join(scratch, 'guest.cpio.gz'),
    );
    const bytes = await readFile(out);
    expect(bytes.subarray(0, base.length).equals(base)).toBe(true);
    const config = gunzipSync(bytes.subarray(base.length)).toString('latin1');
    expect(config).toContain('execenv.conf');
    expect(config).toContain('bind execenv0 /mnt/with space\nbind-ro execenv1 /srv/ro\n');
  });

  it('leaves a guest without binds on the shared file, and refuses targets the configuration cannot carry', async () => {
    expect(await guestInitramfs(shared, { binds: [] }, join(scratch, 'none.cpio.gz'))).toBe(shared);
    for (const target of ['relative', '/a\nbind x /etc'])
      await expect(
        guestInitramfs(shared, { binds: [{ tag: 'execenv0', target, readOnly: false }] }, join(scratch, 'bad.cpio.gz')),
      ).rejects.toThrow(RangeError);
  });
});

describe('guestInitramfs with a pull share', () => {
  it('names the pull share, which init mounts outside the root and hands the agent as descriptor 3', async () => {
    const out = await guestInitramfs(shared, { binds: [], pullTag: 'execenvpull' }, join(scratch, 'pull.cpio.gz'));
    const base = await readFile(shared);
    expect(gunzipSync((await readFile(out)).subarray(base.length)).toString('latin1')).toContain(
      'pull execenvpull -\n',
    );
    const script = initScript([]);
    expect(script).toContain('[ "$kind" = pull ] && pull="/shares/$tag" && continue');
    expect(script).toContain('--stdio <>"$port" >&0 3<"$pull"');
  });
});

describe('guestInitramfs with a network interface', () => {
  const network = {
    mac: '0a:58:0a:d5:00:02',
    address: '10.213.0.2',
    prefixLength: 24,
    gateway: '10.213.0.1',
    resolvConf: 'nameserver 10.213.0.1\nsearch execenv\n',
  };

  it('names the interface by MAC with its address and gateway, and carries the resolv.conf', async () => {
    const out = await guestInitramfs(shared, { binds: [], network }, join(scratch, 'net.cpio.gz'));
    const base = await readFile(shared);
    const config = gunzipSync((await readFile(out)).subarray(base.length)).toString('latin1');
    expect(config).toContain('execenv.conf');
    expect(config).toContain('net 0a:58:0a:d5:00:02 10.213.0.2/24 10.213.0.1\n');
    expect(config).toContain('execenv-resolv.conf');
    expect(config).toContain('nameserver 10.213.0.1\nsearch execenv\n');
  });

  it('keeps the image resolv.conf when the network has no DNS, and refuses malformed addresses', async () => {
    const out = await guestInitramfs(
      shared,
      { binds: [], network: { ...network, resolvConf: undefined } },
      join(scratch, 'nodns.cpio.gz'),
    );
    const base = await readFile(shared);
    expect(gunzipSync((await readFile(out)).subarray(base.length)).toString('latin1')).not.toContain('resolv');
    for (const bad of [{ mac: '0a:58:0a:d5:00:02\nbind x /' }, { address: '10.0.0.2 x' }, { prefixLength: 33 }])
      await expect(
        guestInitramfs(shared, { binds: [], network: { ...network, ...bad } }, join(scratch, 'bad.cpio.gz')),
      ).rejects.toThrow(RangeError);
  });
});
