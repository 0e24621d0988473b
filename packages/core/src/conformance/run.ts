import type { Environment } from '../contract.js';
import { execChecks } from './checks/exec.js';
import { fileRaceCheck } from './checks/file-race.js';
import { fileChecks } from './checks/files.js';
import { lifecycleChecks } from './checks/lifecycle.js';
import { type Check, CheckContext, type CheckName, type ConformanceOptions, SkipCheck, show } from './context.js';

/** Every check of the suite, in the order it runs. */
export const CHECKS: readonly Check[] = [
  ...lifecycleChecks.slice(0, 2),
  ...execChecks,
  ...fileChecks,
  fileRaceCheck,
  ...lifecycleChecks.slice(2),
];

/** The outcome of one check. */
export interface CheckResult {
  name: CheckName;
  /** One line per problem; empty when the check passed. */
  problems: string[];
  /** The reason, when the check was skipped. */
  skipped?: string;
}

/** The outcome of a whole run. */
export interface ConformanceReport {
  name: string;
  results: CheckResult[];
  /** Every problem of every check, prefixed with the check's name. */
  problems: string[];
}

/**
 * Runs one check: opens what it needs (sharing `shared` when given), records
 * every problem instead of stopping at the first, and always cleans up.
 */
export async function runCheck(check: Check, options: ConformanceOptions, shared?: Environment): Promise<CheckResult> {
  const skipped = options.skip?.[check.name];
  if (skipped) return { name: check.name, problems: [], skipped };
  const ctx = new CheckContext(options, shared);
  try {
    await check.run(ctx);
  } catch (err) {
    if (err instanceof SkipCheck) {
      await ctx.cleanup();
      return { name: check.name, problems: ctx.problems, skipped: err.reason };
    }
    ctx.problems.push(`${options.driver.name}: ${check.name}: threw ${show(err)}`);
  } finally {
    await ctx.cleanup();
  }
  return { name: check.name, problems: ctx.problems };
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
