#!/usr/bin/env bash
# Builds the static execenv-agent binary for every Debian architecture whose
# compiler is installed into dist/bin/<arch>/execenv-agent, and writes
# dist/bin/SHA256SUMS, which agentBinaryPath() checks before use.
# amd64 is required; a missing cross compiler skips its architecture.
set -euo pipefail

cd "$(dirname "$0")/.."
version=$(node -p "require('./package.json').version")

# On an amd64 host plain gcc builds amd64; elsewhere the cross compiler does.
amd64_cc=gcc
[[ $(uname -m) == x86_64 ]] || amd64_cc=x86_64-linux-gnu-gcc

targets=(
  "amd64:$amd64_cc"
  arm64:aarch64-linux-gnu-gcc
  armhf:arm-linux-gnueabihf-gcc
  i386:i686-linux-gnu-gcc
  ppc64el:powerpc64le-linux-gnu-gcc
  s390x:s390x-linux-gnu-gcc
  riscv64:riscv64-linux-gnu-gcc
)

staging=dist/bin.staging
rm -rf "$staging"
mkdir -p "$staging"
trap 'rm -rf "$staging"' EXIT

built=()
for target in "${targets[@]}"; do
  arch=${target%%:*}
  cc=${target#*:}
  if ! command -v "$cc" >/dev/null 2>&1; then
    package="gcc-${cc%-gcc}"
    [[ $cc == gcc ]] && package=gcc
    if [[ $arch == amd64 ]]; then
      echo "error: amd64 is required but $cc is not installed (apt-get install $package libc6-dev)" >&2
      exit 1
    fi
    echo "skipped $arch: $cc not installed (apt-get install $package)"
    continue
  fi
  mkdir -p "$staging/$arch"
  # -s strips at link time, so no per-target strip is needed.
  "$cc" -O2 -static -s -Wall -D_FILE_OFFSET_BITS=64 -DAGENT_VERSION="\"$version\"" \
    -o "$staging/$arch/execenv-agent" native/*.c
  built+=("$arch")
done

(cd "$staging" && for arch in "${built[@]}"; do sha256sum "$arch/execenv-agent"; done) >"$staging/SHA256SUMS"

rm -rf dist/bin
mv "$staging" dist/bin
trap - EXIT

summary=()
for arch in "${built[@]}"; do
  summary+=("$arch ($(($(stat -c %s "dist/bin/$arch/execenv-agent") / 1024)) KiB)")
done
echo "built execenv-agent $version: ${summary[*]}"
