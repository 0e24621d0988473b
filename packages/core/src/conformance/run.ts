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

/** Every check of the suite, in the order it runs. */
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

/** A check's deadline when it names none. */
export const DEFAULT_CHECK_DEADLINE_MS = 60_000;

/** The deadline of a check, in milliseconds, stretched by the options' timeScale. */
export function deadlineOf(check: Check, options: Pick<ConformanceOptions, 'timeScale'> = {}): number {
  return scaled(check.timeoutMs ?? DEFAULT_CHECK_DEADLINE_MS, options);
}

/**
 * The test runner's timeout for a check: its deadline plus room for the
 * cleanup after it, so a check that hangs fails by its own deadline, with a
 * message naming where it stood, never by the runner's.
 */
export function runnerTimeoutOf(check: Check, options: Pick<ConformanceOptions, 'timeScale'> = {}): number {
  return deadlineOf(check, options) + 2 * scaled(CLOSE_DEADLINE_MS, options) + 10_000;
}

/** The outcome of one check. */
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

/** The outcome of a whole run. */
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
