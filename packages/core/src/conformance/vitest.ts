import { afterAll, beforeAll, describe, it } from 'vitest';
import type { Environment } from '../contract.js';
import { type ConformanceOptions, scaled } from './context.js';
import { CHECKS, runCheck, runnerTimeoutOf } from './run.js';

/**
 * Registers the whole execenv contract as vitest tests for one driver: one
 * test per check, failing with every problem it found, one line each.
 * Skipped checks show with their reason. Each check runs under its own
 * deadline, below the test's timeout, so a hang fails naming where it stood.
 *
 * @example
 * ```ts
 * import { fileURLToPath } from 'node:url';
 * import { describeConformance } from '@execenv/core/conformance';
 * import { FooDriver } from '../src/index.js'; // in the driver package's test/conformance.test.ts
 * describeConformance({
 *   name: 'foo', driver: new FooDriver(), spec: { image: process.env.EXECENV_TEST_IMAGE! }, // a rootfs tarball
 *   // gc-after-kill imports the built driver in a separate process, which it kills with SIGKILL:
 *   ownerProcess: { module: fileURLToPath(new URL('../dist/index.js', import.meta.url)), exportName: 'FooDriver' },
 * });
 * ```
 */
export function describeConformance(options: ConformanceOptions): void {
  describe(`execenv conformance: ${options.name}`, () => {
    let shared: Environment | undefined;
    beforeAll(async () => {
      shared = await options.driver.open(options.spec, options.openOptions);
    }, 300_000);
    afterAll(
      async () => {
        await shared?.close();
      },
      scaled(120_000, options),
    );
    for (const check of CHECKS) {
      const reason = options.skip?.[check.name];
      if (reason) {
        it.skip(`${check.name} (skipped: ${reason})`, () => {});
        continue;
      }
      it(
        check.name,
        async (t) => {
          const result = await runCheck(check, options, shared);
          if (result.skipped) t.skip(result.skipped);
          if (result.problems.length > 0)
            throw new Error(`${result.problems.length} problem(s):\n${result.problems.join('\n')}`);
        },
        runnerTimeoutOf(check, options),
      );
    }
  });
}
