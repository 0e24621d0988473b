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
  it('writes with X-LXD-uid, X-LXD-gid, X-LXD-mode and X-LXD-type', async () => {
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
  });

  it("rejects with the daemon's error text", async () => {
    const files = new LxdFiles(client, 'missing-instance');
    fake.filesError = { status: 404, error: 'Instance not found' };
    await expect(files.write('/tmp/a', Buffer.from('x'), { uid: 0, gid: 0, mode: 0o644 })).rejects.toMatchObject({
      status: 404,
      message: expect.stringContaining('Instance not found'),
    });
  });
});
