/**
 * The execenv conformance suite: `describeConformance` registers the whole
 * contract as vitest tests for any driver; `runConformance` runs it without
 * a test framework and returns every problem.
 * @packageDocumentation
 */

export { isStaticElf } from '../driver/static-elf.js';
export { missingCommandsScript, REQUIRED_COMMANDS } from './checks/prerequisites.js';
export { DEV_STDIO_SCRIPT } from './checks/spec.js';
export {
  type Check,
  CheckContext,
  type CheckName,
  type ConformanceOptions,
  type HostEvidenceKind,
} from './context.js';
export { buildConformanceImage, type ConformanceImageOptions } from './fixture.js';
export {
  CHECKS,
  type CheckResult,
  type ConformanceReport,
  DEFAULT_CHECK_DEADLINE_MS,
  deadlineOf,
  runCheck,
  runConformance,
  runnerTimeoutOf,
} from './run.js';
export { describeConformance } from './vitest.js';
