import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LxdApiError, LxdClient, LxdConnectionError } from '../src/lxd-client.js';
import { LxdFiles } from '../src/lxd-files.js';
import { FakeLxd } from './fake-lxd.js';

let fake: FakeLxd;
let client: LxdClient;

beforeEach(async () => {
  fake = await FakeLxd.start();
  client = new LxdClient({ socketPath: fake.socketPath }, { project: 'ci' });
});
afterEach(async () => {
  client.close();
  await fake.stop();
});

describe('LxdClient', () => {
  it('unwraps the metadata of a sync answer and adds the project to every request', async () => {
    const server = await client.get<{ environment: { server_version: string } }>('/1.0');
    expect(server.environment.server_version).toBe('5.0.2');
    expect(fake.requests[0]).toMatchObject({ method: 'GET', path: '/1.0', query: { project: 'ci' } });
  });

  it("throws LxdApiError with the status and the daemon's message", async () => {
    const err = await client.get('/1.0/instances/nope').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LxdApiError);
    expect(err).toMatchObject({ status: 404, method: 'GET', path: '/1.0/instances/nope' });
    expect((err as Error).message).toContain('Instance not found');
  });

  it('sends JSON bodies and waits for the operation an async answer started', async () => {
    const op = await client.run({ method: 'POST', path: '/1.0/instances', body: { name: 'c1', type: 'container' } });
    expect(op.status).toBe('Success');
    const post = fake.requests.find((r) => r.method === 'POST')!;
    expect(post.headers['content-type']).toBe('application/json');
    expect(post.json).toEqual({ name: 'c1', type: 'container' });
    expect(fake.requests.at(-1)!.path).toBe(`/1.0/operations/${op.id}/wait`);
  });

  it('says which socket it could not reach', async () => {
    const broken = new LxdClient({ socketPath: `${fake.socketPath}.missing` });
    const err = await broken.get('/1.0').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LxdConnectionError);
    expect((err as Error).message).toContain(`${fake.socketPath}.missing`);
  });
});

describe('LxdFiles', () => {
  it('writes with X-LXD-uid, X-LXD-gid, X-LXD-mode and X-LXD-type, and reads the headers back', async () => {
    const files = new LxdFiles(client, 'c1');
    await files.write('/tmp/a', Buffer.from('hello'), { uid: 1234, gid: 2345, mode: 0o640 });
    const post = fake.requests.at(-1)!;
    expect(post).toMatchObject({
      method: 'POST',
      path: '/1.0/instances/c1/files',
      query: { path: '/tmp/a', project: 'ci' },
    });
    expect(post.headers).toMatchObject({
      'x-lxd-uid': '1234',
      'x-lxd-gid': '2345',
      'x-lxd-mode': '0640',
      'x-lxd-type': 'file',
      'x-lxd-write': 'overwrite',
    });
    expect(post.body.toString()).toBe('hello');
    expect(await files.info('/tmp/a')).toMatchObject({ type: 'file', uid: 1234, gid: 2345, mode: 0o640 });
    expect(await files.size('/tmp/a')).toBe(5);
    expect(await files.info('/tmp/missing')).toBeNull();
  });

  it('makes directories and symlinks, lists directories sorted, and follows symlinks inside the instance', async () => {
    const files = new LxdFiles(client, 'c1');
    await files.mkdir('/d', { uid: 0, gid: 0, mode: 0o755 });
    await files.write('/d/target', Buffer.from('x'), { uid: 0, gid: 0, mode: 0o644 });
    await files.symlink('/d/link', 'target', { uid: 0, gid: 0 });
    await files.symlink('/d/abs', '/d/link', { uid: 0, gid: 0 });
    expect(fake.requests.filter((r) => r.method === 'POST').map((r) => r.headers['x-lxd-type'])).toEqual([
      'directory',
      'file',
      'symlink',
      'symlink',
    ]);
    expect(await files.list('/d')).toEqual(['abs', 'link', 'target']);
    const resolved = await files.resolve('/d/abs');
    expect(resolved.path).toBe('/d/target');
    expect(resolved.info?.type).toBe('file');
  });

  it('gives up on a symlink loop', async () => {
    const files = new LxdFiles(client, 'c1');
    await files.symlink('/a', '/b', { uid: 0, gid: 0 });
    await files.symlink('/b', '/a', { uid: 0, gid: 0 });
    await expect(files.resolve('/a')).rejects.toThrow(/too many levels of symbolic links/);
  });
});
