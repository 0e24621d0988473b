import type { Environment } from '../contract.js';
import { execChecks } from './checks/exec.js';
import { fileRaceCheck } from './checks/file-race.js';
import { fileChecks } from './checks/files.js';
import { leakChecks } from './checks/leaks.js';
import { closingChecks, openingChecks } from './checks/lifecycle.js';
import { missingPrerequisites, prerequisitesCheck } from './checks/prerequisites.js';
import { specChecks } from './checks/spec.js';
import {
  bounded,
  type Check,
  CheckContext,
  type CheckName,
  CLOSE_DEADLINE_MS,
  type ConformanceOptions,
  HUNG,
  SkipCheck,
  scaled,
  show,
} from './context.js';

/**
 * Every check of the suite, in the order it runs.
 *
 * @example
 * ```ts
 * import { CHECKS, runCheck } from '@execenv/core/conformance';
 * // Only the file checks, while working on push and pull:
 * for (const check of CHECKS.filter((c) => /file|archive|symlink/.test(c.name)))
 *   console.log(await runCheck(check, { name: 'foo', driver: new FooDriver(), spec: { image } }));
 * ```
 */
export const CHECKS: readonly Check[] = [
  prerequisitesCheck,
  ...openingChecks,
  ...execChecks,
  ...specChecks,
  ...fileChecks,
  fileRaceCheck,
  ...leakChecks,
  ...closingChecks,
];

/**
 * A check's deadline when it names none.
 *
 * @example
 * ```ts
 * import { CHECKS, DEFAULT_CHECK_DEADLINE_MS } from '@execenv/core/conformance';
 * // The checks that allow themselves longer than the default 60 s:
 * const slow = CHECKS.filter((c) => (c.timeoutMs ?? DEFAULT_CHECK_DEADLINE_MS) > DEFAULT_CHECK_DEADLINE_MS);
 * ```
 */
export const DEFAULT_CHECK_DEADLINE_MS = 60_000;

/**
 * The deadline of a check, in milliseconds, stretched by the options' timeScale.
 *
 * @example
 * ```ts
 * import { CHECKS, deadlineOf } from '@execenv/core/conformance';
 * // How long each check may take on a VM under emulation, five times slower than native:
 * for (const check of CHECKS) console.log(check.name, deadlineOf(check, { timeScale: 5 }));
 * ```
 */
export function deadlineOf(check: Check, options: Pick<ConformanceOptions, 'timeScale'> = {}): number {
  return scaled(check.timeoutMs ?? DEFAULT_CHECK_DEADLINE_MS, options);
}

/**
 * The test runner's timeout for a check: its deadline plus room for the
 * cleanup after it, so a check that hangs fails by its own deadline, with a
 * message naming where it stood, never by the runner's.
 *
 * @example
 * ```ts
 * import { test } from 'node:test';
 * import { CHECKS, runCheck, runnerTimeoutOf } from '@execenv/core/conformance';
 * // The suite under node:test: each test's timeout sits above the check's own deadline.
 * for (const check of CHECKS)
 *   test(check.name, { timeout: runnerTimeoutOf(check, options) }, async () => {
 *     const { problems } = await runCheck(check, options);
 *     if (problems.length > 0) throw new Error(problems.join('\n'));
 *   });
 * ```
 */
export function runnerTimeoutOf(check: Check, options: Pick<ConformanceOptions, 'timeScale'> = {}): number {
  return deadlineOf(check, options) + 2 * scaled(CLOSE_DEADLINE_MS, options) + 10_000;
}

/**
 * The outcome of one check.
 *
 * @example
 * ```ts
 * import { type CheckResult, runConformance } from '@execenv/core/conformance';
 * const { results } = await runConformance(options);
 * const failed: CheckResult[] = results.filter((r) => r.problems.length > 0);
 * for (const r of failed) console.log(r.name, r.deadlineMissed ? '(missed its deadline)' : '', r.problems);
 * for (const r of results) if (r.skipped) console.log(`${r.name} skipped: ${r.skipped}`);
 * ```
 */
export interface CheckResult {
  name: CheckName;
  /** One line per problem; empty when the check passed. */
  problems: string[];
  /** The reason, when the check was skipped. */
  skipped?: string;
  /**
   * True when the check missed its own deadline. Its problems then include
   * one naming the step it stood on; the others were found before.
   */
  deadlineMissed?: true;
}

/**
 * The outcome of a whole run.
 *
 * @example
 * ```ts
 * import { writeFile } from 'node:fs/promises';
 * import { type ConformanceReport, runConformance } from '@execenv/core/conformance';
 * const report: ConformanceReport = await runConformance(options);
 * await writeFile('conformance.json', JSON.stringify(report, null, 2)); // kept as a CI artifact
 * console.log(`${report.name}: ${report.problems.length} problem(s)`);
 * ```
 */
export interface ConformanceReport {
  name: string;
  results: CheckResult[];
  /** Every problem of every check, prefixed with the check's name. */
  problems: string[];
}

/**
 * Runs one check under its own deadline: opens what it needs (sharing
 * `shared` when given), records every problem instead of stopping at the
 * first, and always cleans up. A check that misses its deadline fails with
 * `<driver>: <check>: did not finish within N ms (at: <step>)`.
 *
 * @example
 * ```ts
 * import { CHECKS, runCheck } from '@execenv/core/conformance';
 * // Chasing a flaky failure: one check, again and again.
 * const race = CHECKS.find((c) => c.name === 'file-race')!;
 * for (let i = 0; i < 20; i++) {
 *   const { problems } = await runCheck(race, { name: 'foo', driver: new FooDriver(), spec: { image } });
 *   if (problems.length > 0) throw new Error(problems.join('\n'));
 * }
 * ```
 */
export async function runCheck(check: Check, options: ConformanceOptions, shared?: Environment): Promise<CheckResult> {
  const skipped = options.skip?.[check.name];
  if (skipped) return { name: check.name, problems: [], skipped };
  const ctx = new CheckContext(options, shared);
  const deadline = deadlineOf(check, options);
  let missed = false;
  let skippedAtRunTime: string | undefined;
  const running = check.run(ctx).catch((err: unknown) => {
    if (err instanceof SkipCheck) skippedAtRunTime = err.reason;
    else if (!missed) ctx.problems.push(`${options.driver.name}: ${check.name}: threw ${show(err)}`);
  });
  if ((await bounded(running, deadline)) === HUNG) {
    missed = true;
    ctx.problems.push(`${options.driver.name}: ${check.name}: did not finish within ${deadline} ms (at: ${ctx.step})`);
  }
  await ctx.cleanup();
  const problems = [...ctx.problems];
  const missing = missingPrerequisites(options);
  if (problems.length > 0 && missing.length > 0 && check.name !== 'image-prerequisites')
    problems.push(`note: the image lacks ${missing.join(', ')} (see image-prerequisites); that may be the cause`);
  if (skippedAtRunTime !== undefined && problems.length === 0)
    return { name: check.name, problems, skipped: skippedAtRunTime };
  return { name: check.name, problems, ...(missed ? { deadlineMissed: true as const } : {}) };
}

/**
 * Runs the whole suite against a driver without any test framework and
 * returns every problem, like Go's testing/fstest.TestFS.
 *
 * @example
 * ```ts
 * import { runConformance } from '@execenv/core/conformance';
 * const report = await runConformance({ name: 'foo', driver: new FooDriver(), spec: { image: './conformance.tar' } });
 * for (const line of report.problems) console.error(line); // `<check>: <where>: <op>: got X, want Y`
 * process.exitCode = report.problems.length > 0 ? 1 : 0;
 * ```
 */
export async function runConformance(options: ConformanceOptions): Promise<ConformanceReport> {
  const shared = await options.driver.open(options.spec, options.openOptions);
  const results: CheckResult[] = [];
  try {
    for (const check of CHECKS) results.push(await runCheck(check, options, shared));
  } finally {
    await shared.close();
  }
  return {
    name: options.name,
    results,
    problems: results.flatMap((r) => r.problems.map((p) => `${r.name}: ${p}`)),
  };
}
