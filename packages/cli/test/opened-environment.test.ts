import { register } from '@execenv/core';
import { FakeDriver } from '@execenv/core/testing';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { CommandContext } from '../src/command-context.js';
import { openEnvironment } from '../src/opened-environment.js';
import { memoryIO } from './memory-io.js';

register('cli-hangup-fake', new FakeDriver({ name: 'cli-hangup-fake' }));

const context = () => new CommandContext(memoryIO({ env: { XDG_CONFIG_HOME: '/nonexistent' } }).io);

/** Makes the environment's close wait until the returned function is called. */
function holdClose(env: { close: () => Promise<void> }) {
  const real = env.close.bind(env);
  let release!: () => void;
  const gate = new Promise<void>((r) => {
    release = r;
  });
  const close = vi.fn(async () => {
    await gate;
    await real();
  });
  env.close = close;
  return { close, release };
}

afterEach(() => vi.restoreAllMocks());

describe('openEnvironment and a hangup', () => {
  it('keeps SIGHUP handled until a close already under way has finished, then lets it take its course', async () => {
    const kill = vi.spyOn(process, 'kill').mockImplementation(() => true);
    const before = process.listenerCount('SIGHUP');
    const ctx = context();
    const opened = await openEnvironment(ctx, { driver: 'cli-hangup-fake' });
    const held = holdClose(opened.env);

    // The shell ended as its terminal went (end of input): its own close starts first.
    const closed = opened.close();
    await new Promise((r) => setImmediate(r));
    // Then the hangup comes: without a handler, Node would end the process mid-close.
    expect(process.listenerCount('SIGHUP')).toBe(before + 1);
    process.emit('SIGHUP', 'SIGHUP');
    expect(ctx.hungUp).toBe(true);
    expect(kill).not.toHaveBeenCalled();

    held.release();
    await closed;
    await new Promise((r) => setImmediate(r));
    expect(held.close).toHaveBeenCalledTimes(1);
    expect(kill).toHaveBeenCalledWith(process.pid, 'SIGHUP');
    expect(process.listenerCount('SIGHUP')).toBe(before);
  });

  it('removes its handler when the command closes without a hangup', async () => {
    const kill = vi.spyOn(process, 'kill').mockImplementation(() => true);
    const before = process.listenerCount('SIGHUP');
    const opened = await openEnvironment(context(), { driver: 'cli-hangup-fake' });
    expect(process.listenerCount('SIGHUP')).toBe(before + 1);
    await opened.close();
    expect(process.listenerCount('SIGHUP')).toBe(before);
    expect(kill).not.toHaveBeenCalled();
  });
});
