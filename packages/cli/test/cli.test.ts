import { register } from '@execenv/core';
import { FakeDriver } from '@execenv/core/testing';
import { describe, expect, it } from 'vitest';
import { runCli } from '../src/cli.js';
import { memoryIO } from './memory-io.js';

const fake = new FakeDriver({
  name: 'cli-fake',
  commands: {
    env: ({ env }) => ({
      stdout: Object.entries(env)
        .map(([k, v]) => `${k}=${v}\n`)
        .join(''),
    }),
    where: ({ cwd, user }) => ({ stdout: `${cwd} ${user}\n` }),
    fail: () => ({ exitCode: 7, stderr: 'failing\n' }),
    killed: () => ({ signal: 'SIGKILL' }),
  },
});
register('cli-fake', fake);
register(
  'cli-broken',
  new FakeDriver({ name: 'cli-broken', unavailable: 'the backend is missing: apt-get install broken' }),
);

const COMMANDS = [
  'run',
  'shell',
  'drivers',
  'image',
  'image pull',
  'image import',
  'image convert',
  'image ls',
  'image rm',
  'image prune',
  'ps',
  'gc',
  'config',
];

async function cli(args: string[], opts: Parameters<typeof memoryIO>[0] = {}) {
  const m = memoryIO({ env: { XDG_CONFIG_HOME: '/nonexistent', ...opts.env }, ...opts });
  const code = await runCli(args, m.io);
  return { code, stdout: m.stdout(), stderr: m.stderr() };
}

describe('execenv help', () => {
  it('documents exit codes and variables at the top', async () => {
    const r = await cli(['--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Usage: execenv \[options\] \[command\]/);
    for (const name of ['run', 'shell', 'drivers', 'image', 'ps', 'gc', 'config'])
      expect(r.stdout).toMatch(new RegExp(`\\n  ${name} `));
    expect(r.stdout).toContain('124  the command timed out');
    expect(r.stdout).toContain('EXECENV_DRIVER');
  });

  it.each(COMMANDS)('gives help with examples for "%s"', async (command) => {
    const r = await cli([...command.split(' '), '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`Usage: execenv ${command}`);
    expect(r.stdout).toMatch(/\nExamples:\n {2}execenv /);
    expect(r.stderr).toBe('');
  });
});

describe('execenv usage errors', () => {
  it.each([
    [['run', '--bogus', '--', 'true'], /^execenv: unknown option '--bogus' \(see 'execenv run --help'\)\n$/],
    [['run'], /^execenv: missing required argument 'command' \(see 'execenv run --help'\)\n$/],
    [
      ['run', '--timeout', 'soon', '--', 'true'],
      /^execenv: option '-t, --timeout <seconds>' argument 'soon' is invalid\. expected a positive number of seconds/,
    ],
    [
      ['run', '--push', 'nocolon', '--', 'true'],
      /^execenv: option '--push <host:guest>' argument 'nocolon' is invalid/,
    ],
    [['run', '-e', 'NOVALUE', '--', 'true'], /NAME=VALUE/],
    [['image', 'convert', 'x.tar'], /^execenv: required option '--to <format>' not specified/],
    [['image', 'convert', 'x.tar', '--to', 'vmdk'], /Allowed choices are directory, lxd, qcow2, podman/],
    [['drivers', '--quiet', '--verbose'], /cannot be used with option '-v, --verbose'/],
    [['nope'], /^execenv: unknown command 'nope'/],
  ])('%j exits 2 with one line', async (args, message) => {
    const r = await cli(args);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(r.stdout).toBe('');
  });

  it('exits 2 without a command, showing the help on stderr', async () => {
    const r = await cli([]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('Usage: execenv');
  });
});

describe('execenv run on the fake driver', () => {
  it('streams stdout and exits with the command status', async () => {
    const ok = await cli(['run', '--driver', 'cli-fake', '--', 'echo', 'hello', 'world']);
    expect(ok).toEqual({ code: 0, stdout: 'hello world\n', stderr: '' });
    const bad = await cli(['run', '--driver', 'cli-fake', '--', 'fail']);
    expect(bad).toEqual({ code: 7, stdout: '', stderr: 'failing\n' });
    expect(fake.openEnvironments.size).toBe(0);
  });

  it('maps a signal to 128 + N', async () => {
    expect((await cli(['run', '--driver', 'cli-fake', '--', 'killed'])).code).toBe(137);
  });

  it('passes only the given variables, cwd and user', async () => {
    const r = await cli(['run', '--driver', 'cli-fake', '-e', 'A=1', '-e', 'B=x=y', '--', 'env'], {
      env: { SECRET: 'host' },
    });
    expect(r.stdout.split('\n').sort().filter(Boolean)).toEqual(['A=1', 'B=x=y', 'PATH=/usr/bin:/bin']);
    const w = await cli(['run', '--driver', 'cli-fake', '--cwd', '/tmp', '--user', 'nobody', '--', 'where']);
    expect(w.stdout).toBe('/tmp nobody\n');
  });

  it('forwards stdin that is not a terminal', async () => {
    const r = await cli(['run', '--driver', 'cli-fake', '--', 'cat'], { stdin: 'piped in\n' });
    expect(r.stdout).toBe('piped in\n');
  });

  it('takes the driver from EXECENV_DRIVER, and options after the command belong to it', async () => {
    const r = await cli(['run', 'echo', '--not-an-option', '-x'], { env: { EXECENV_DRIVER: 'cli-fake' } });
    expect(r).toMatchObject({ code: 0, stdout: '--not-an-option -x\n' });
  });

  it("exits 3 with the registry's reason for an unknown driver", async () => {
    const r = await cli(['run', '--driver', 'no-such-driver', '--', 'true']);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/^execenv: unknown driver "no-such-driver" .*\[UNKNOWN_DRIVER\]\n$/);
  });

  it('exits 2 for a spec the driver refuses, naming the field', async () => {
    const r = await cli(['run', '--driver', 'cli-fake', '--image', '', '--', 'true']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/invalid image: must be a non-empty string \[INVALID_SPEC\]/);
  });

  it('exits 125 when a push fails, after closing the environment', async () => {
    const r = await cli(['run', '--driver', 'cli-fake', '--push', '/nonexistent/file:/x', '--', 'true']);
    expect(r.code).toBe(125);
    expect(r.stderr).toMatch(/execenv: push: no such file or directory "\/nonexistent\/file" \[NOT_FOUND\]\n/);
    expect(r.stderr).not.toMatch(/ENOENT/);
    expect(fake.openEnvironments.size).toBe(0);
  });
});

describe('execenv drivers', () => {
  it('lists registered drivers with their probe, and the project drivers that are not loadable', async () => {
    const r = await cli(['drivers', '--json']);
    expect(r.code).toBe(0);
    const { drivers } = JSON.parse(r.stdout) as {
      drivers: { name: string; available: boolean; reason?: string; install?: string }[];
    };
    const byName = new Map(drivers.map((d) => [d.name, d]));
    expect(byName.get('cli-fake')).toMatchObject({ available: true, version: 'fake', installed: true });
    expect(byName.get('cli-broken')).toMatchObject({
      available: false,
      installed: true,
      reason: 'the backend is missing: apt-get install broken',
    });
    for (const name of ['chroot', 'lxd', 'nspawn', 'podman', 'qemu']) expect(byName.has(name)).toBe(true);
    expect(drivers.map((d) => d.name)).toEqual([...drivers.map((d) => d.name)].sort());
  });

  it('prints a table with a status and notes', async () => {
    const r = await cli(['drivers']);
    expect(r.stdout.split('\n')[0]).toMatch(/^DRIVER +STATUS +VERSION +CAPABILITIES +NOTES$/);
    expect(r.stdout).toMatch(/\ncli-broken +unavailable +- +isolation-container,root +the backend is missing/);
  });
});
