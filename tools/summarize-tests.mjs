#!/usr/bin/env node
// Reads vitest JSON reports and ends with one plain line: "N passed, N failed, N skipped".
// Before it, "mutants: N caught, N survived" counts the mutant corpus: tests titled
// "mutant <name>: caught by <check>"; a failed one survived (or was caught only by a deadline).
// Exits 1 when a report is missing, a test failed, a mutant survived or was skipped, fewer than
// MUTANT_FLOOR mutants were caught, or nothing passed at all.
import { readFileSync } from 'node:fs';

const reports = process.argv.slice(2);
let passed = 0;
let failed = 0;
let skipped = 0;
let missing = 0;
let caught = 0;
let survived = 0;
let unrun = 0;
// The corpus the project promises to run in full (issue: every survivor listed, at least 25).
const MUTANT_FLOOR = 25;
for (const file of reports) {
  let report;
  try {
    report = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    console.log(`missing or unreadable test report: ${file} (${err.code ?? err.message})`);
    missing++;
    continue;
  }
  passed += report.numPassedTests ?? 0;
  failed += report.numFailedTests ?? 0;
  skipped += (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0);
  for (const suite of report.testResults ?? [])
    for (const t of suite.assertionResults ?? []) {
      if (t.status === 'failed') console.log(`FAILED: ${t.fullName}`);
      if (/^mutant \S+: caught by /.test(t.title ?? '')) {
        if (t.status === 'passed') caught++;
        else if (t.status === 'failed') {
          survived++;
          console.log(`SURVIVED: ${t.title}`);
        } else {
          unrun++;
          console.log(`NOT RUN: ${t.title}`);
        }
      }
    }
  // A file that failed to load, or failed outside its tests (a hook), has no failed test in it:
  // count it so it cannot pass unnoticed.
  for (const suite of report.testResults ?? [])
    if (suite.status === 'failed' && !(suite.assertionResults ?? []).some((t) => t.status === 'failed')) {
      console.log(`FAILED outside its tests: ${suite.name}: ${(suite.message ?? '').split('\n')[0]}`);
      failed++;
    }
}
// The test command always runs the corpus: no mutant line at all means it went missing.
const mutantsShort = unrun > 0 || caught < MUTANT_FLOOR;
console.log(`mutants: ${caught} caught, ${survived} survived${unrun ? `, ${unrun} not run` : ''}`);
if (mutantsShort) console.log(`mutants: every mutant must run and at least ${MUTANT_FLOOR} be caught`);
console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(missing > 0 || failed > 0 || survived > 0 || mutantsShort || passed === 0 ? 1 : 0);
