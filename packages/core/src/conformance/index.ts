/**
 * The execenv conformance suite: `describeConformance` registers the whole
 * contract as vitest tests for any driver; `runConformance` runs it without
 * a test framework and returns every problem.
 * @packageDocumentation
 */
export { type Check, CheckContext, type CheckName, type ConformanceOptions } from './context.js';
export { CHECKS, type CheckResult, type ConformanceReport, runCheck, runConformance } from './run.js';
export { describeConformance } from './vitest.js';
