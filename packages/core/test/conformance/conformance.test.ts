import { describe, expect, it } from 'vitest';
import { CHECKS, runCheck, runConformance } from '../../src/conformance/run.js';
import { FakeDriver } from '../../src/testing/index.js';

// The in-memory fake has no shell: a suite that passed it would be checking nothing.
describe('the conformance suite can fail', () => {
  it('reports problems, one line each, naming the environment and the operation', async () => {
    const report = await runConformance({
      name: 'fake',
      driver: new FakeDriver(),
      spec: {},
      largeFileBytes: 1024,
      streamBytes: 1024,
    });
    expect(report.results.map((r) => r.name)).toEqual(CHECKS.map((c) => c.name));
    const exit = report.results.find((r) => r.name === 'exit-codes');
    expect(
      exit?.problems.some((p) =>
        /^execenv-[a-z0-9]+: exec \["sh","-c","kill -KILL \$\$"\]: got \{"exitCode":127,"signal":null\}, want \{"exitCode":null,"signal":"SIGKILL"\}$/.test(
          p,
        ),
      ),
    ).toBe(true);
    expect(report.results.find((r) => r.name === 'cwd')?.problems.length).toBeGreaterThan(0);
    expect(report.problems.length).toBeGreaterThan(10);
  }, 60_000);

  it('passes checks the fake does satisfy', async () => {
    const options = { name: 'fake', driver: new FakeDriver(), spec: {} };
    for (const name of ['open-close', 'invalid-spec', 'leaks'] as const) {
      const check = CHECKS.find((c) => c.name === name)!;
      expect(await runCheck(check, options)).toEqual({ name, problems: [] });
    }
  });

  it('finds a driver that leaks environments past close', async () => {
    const leaky = new FakeDriver();
    const list = leaky.list.bind(leaky);
    const seen: string[] = [];
    leaky.list = async () => {
      for (const e of await list()) if (!seen.includes(e.id)) seen.push(e.id);
      return seen.map((id) => ({ id, driver: 'fake', ownerAlive: true, resources: [] }));
    };
    const r = await runCheck(CHECKS.find((c) => c.name === 'leaks')!, { name: 'leaky', driver: leaky, spec: {} });
    expect(r.problems).toEqual([expect.stringMatching(/: list\(\) after close: got "still listed", want "gone"$/)]);
  });

  it('finds a driver that holds a whole stream in memory', async () => {
    // This fake produces all of head's output at once, as a driver that buffers before streaming would.
    const holding = new FakeDriver({ commands: { head: ({ argv }) => ({ stdout: new Uint8Array(Number(argv[2])) }) } });
    const r = await runCheck(CHECKS.find((c) => c.name === 'streaming-memory')!, {
      name: 'holding',
      driver: holding,
      spec: {},
    });
    expect(r.problems).toEqual([
      expect.stringMatching(
        /: host memory held while the reader paused: got "\d+ bytes", want "< \d+ \(backpressure\)"$/,
      ),
    ]);
  });

  it('skips, with the reason, what the driver declares as a gap', async () => {
    const r = await runCheck(CHECKS.find((c) => c.name === 'user')!, {
      name: 'fake',
      driver: new FakeDriver(),
      spec: {},
      skip: { user: 'no users here' },
    });
    expect(r).toEqual({ name: 'user', problems: [], skipped: 'no users here' });
  });
});
