import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { QmpClient } from '../src/qmp.js';

const scratch = await mkdtemp(join(tmpdir(), 'execenv-qmp-test-'));
const servers: Server[] = [];
afterAll(async () => {
  for (const s of servers) s.close();
  await rm(scratch, { recursive: true, force: true });
});

/** A QMP server speaking as QEMU 7.2 does; records what it received. */
async function fakeQemu(name: string, answer: (cmd: Record<string, unknown>, socket: Socket) => void) {
  const path = join(scratch, name);
  const received: Record<string, unknown>[] = [];
  const server = createServer((socket) => {
    socket.write('{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}}, "capabilities": ["oob"]}}\r\n');
    let buffer = '';
    socket.on('data', (chunk) => {
      buffer += chunk.toString();
      for (let nl = buffer.indexOf('\n'); nl >= 0; nl = buffer.indexOf('\n')) {
        const cmd = JSON.parse(buffer.slice(0, nl)) as Record<string, unknown>;
        buffer = buffer.slice(nl + 1);
        received.push(cmd);
        answer(cmd, socket);
      }
    });
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return { path, received };
}

describe('QmpClient', () => {
  it('negotiates, runs commands by id, and keeps events', async () => {
    const qemu = await fakeQemu('a.sock', (cmd, socket) => {
      if (cmd.execute === 'query-status') {
        socket.write('{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "RESUME"}\r\n');
        socket.write(`{"return": {"status": "running", "running": true}, "id": "${cmd.id}"}\r\n`);
      } else if (cmd.execute === 'nonsense') {
        socket.write(
          `{"error": {"class": "CommandNotFound", "desc": "The command nonsense has not been found"}, "id": "${cmd.id}"}\r\n`,
        );
      } else socket.write(`{"return": {}, "id": "${cmd.id}"}\r\n`);
    });
    const qmp = await QmpClient.connect(qemu.path);
    expect(await qmp.execute('query-status')).toEqual({ status: 'running', running: true });
    await expect(qmp.execute('nonsense')).rejects.toThrow('CommandNotFound: The command nonsense has not been found');
    expect(qmp.events).toEqual([{ event: 'RESUME', data: undefined }]);
    expect(qemu.received.map((c) => c.execute)).toEqual(['qmp_capabilities', 'query-status', 'nonsense']);
    qmp.close();
    await expect(qmp.execute('quit')).rejects.toThrow(/closed/);
  });

  it('fails pending commands when QEMU goes away', async () => {
    const qemu = await fakeQemu('b.sock', (cmd, socket) => {
      if (cmd.execute === 'quit') socket.destroy();
      else socket.write(`{"return": {}, "id": "${cmd.id}"}\r\n`);
    });
    const qmp = await QmpClient.connect(qemu.path);
    await expect(qmp.execute('quit')).rejects.toThrow(/QMP connection closed/);
  });

  it('gives up on a socket that never greets, as TRANSPORT', async () => {
    const path = join(scratch, 'silent.sock');
    const server = createServer(() => {});
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(path, resolve));
    await expect(QmpClient.connect(path, 200)).rejects.toMatchObject({ code: 'TRANSPORT' });
    await expect(QmpClient.connect(join(scratch, 'absent.sock'), 200)).rejects.toMatchObject({ code: 'TRANSPORT' });
  });
});
