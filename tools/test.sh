#!/usr/bin/env bash
# The project's one test command (README, .ci/run): installs what is missing,
# sets the host up, builds the fixtures, then lint, typecheck, unit tests and
# the end-to-end suite against real backends, and ends with "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
failed_steps=()
current_step=
step() { current_step=$*; printf '\n=== %s\n' "$*"; }
# Records a failing step instead of stopping, so the summary still counts every test that ran.
run() { "$@" || { status=1; failed_steps+=("$current_step"); }; }

step "npm dependencies"
# npm ci installs exactly what package-lock.json pins, and fails when the lock and package.json
# disagree (after a dependency change: npm install, then node tools/lockfile-platforms.mjs).
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund || exit 1
fi

step "host setup"
bash tools/setup-host.sh || exit 1

step "fixtures"
fixtures=$(bash tools/fixtures/all.sh) || exit 1
echo "$fixtures"
export EXECENV_FIXTURE_BUSYBOX=$(sed -n 's/^busybox=//p' <<<"$fixtures")
export EXECENV_FIXTURE_MINBASE=$(sed -n 's/^minbase=//p' <<<"$fixtures")
export EXECENV_FIXTURE_SYSTEMD=$(sed -n 's/^systemd=//p' <<<"$fixtures")
export EXECENV_QEMU_KERNEL=$(sed -n 's/^qemu-kernel=//p' <<<"$fixtures")

find packages e2e -path '*/test-results/vitest.json' -not -path '*/node_modules/*' -delete

step "build, lint, typecheck"
run npx nx run-many -t build lint typecheck --outputStyle=static
# The packages lint themselves through nx; this also covers tools/, e2e/ and the top-level files.
run npx biome check .
# Every public export (what a package's exports map reaches) has TSDoc with an @example.
run node tools/check-tsdoc.mjs

step "unit tests"
# Uncached so every run writes the reports the summary reads.
run npx nx run-many -t test --skip-nx-cache --outputStyle=static

step "end-to-end tests against real backends"
run npx nx run @execenv/e2e:e2e --skip-nx-cache --outputStyle=static

step "summary"
reports=()
for pkg in packages/*/; do
  [ -f "$pkg/vitest.config.ts" ] && reports+=("$pkg/test-results/vitest.json")
done
reports+=(e2e/test-results/vitest.json)
for failed_step in "${failed_steps[@]}"; do echo "step failed: $failed_step"; done
node tools/summarize-tests.mjs "${reports[@]}" || status=1
exit $status
