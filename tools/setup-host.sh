#!/usr/bin/env bash
# Installs and configures, from the Debian archive only, what execenv's real
# backends and fixtures need on this host. Idempotent: a second run changes
# nothing and takes a second.
set -euo pipefail

say() { printf 'setup-host: %s\n' "$*"; }
die() { printf 'setup-host: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (try: sudo bash $0)"
export DEBIAN_FRONTEND=noninteractive

# Installs the packages not installed yet; runs apt-get update only when something is missing.
apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "installing ${missing[*]}"
  if [ -z "${APT_UPDATED:-}" ]; then
    apt-get update -qq
    APT_UPDATED=1
  fi
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Tools every driver and the fixtures use: decompressors, the rootfs builders, benchmarks.
setup_common() {
  apt_install tar gzip xz-utils zstd bzip2 util-linux mount mmdebstrap busybox-static hyperfine ca-certificates curl openssl attr
}

# @execenv/agent's package build: static binaries of the agent for every Debian architecture a
# cross compiler in the archive covers (consumers of the npm package need none of this); its
# native tests build hostile archives with python3.
setup_agent() {
  command -v python3 >/dev/null || apt_install python3
  apt_install gcc libc6-dev \
    gcc-aarch64-linux-gnu libc6-dev-arm64-cross \
    gcc-arm-linux-gnueabihf libc6-dev-armhf-cross \
    gcc-i686-linux-gnu libc6-dev-i386-cross \
    gcc-powerpc64le-linux-gnu libc6-dev-ppc64el-cross \
    gcc-s390x-linux-gnu libc6-dev-s390x-cross \
    gcc-riscv64-linux-gnu libc6-dev-riscv64-cross
}

# The chroot driver: namespaces and overlayfs from util-linux and the kernel.
setup_chroot() {
  apt_install uidmap iproute2
  # Subordinate ids let rootless mode map users besides root (unshare --map-users through newuidmap).
  for f in /etc/subuid /etc/subgid; do
    grep -q '^root:' "$f" 2>/dev/null || { echo 'root:1000000:65536' >> "$f" && say "added subordinate ids for root to $f"; }
  done
  # An unprivileged user with subordinate ids of its own: the e2e suite runs rootless mode as it,
  # where the host side cannot delete what subordinate ids own.
  if ! getent passwd execenv-e2e >/dev/null; then
    useradd --system --user-group --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin execenv-e2e
    say "added the unprivileged user execenv-e2e"
  fi
  for f in /etc/subuid /etc/subgid; do
    grep -q '^execenv-e2e:' "$f" || { echo 'execenv-e2e:1065536:65536' >> "$f" && say "added subordinate ids for execenv-e2e to $f"; }
  done
  grep -qw overlay /proc/filesystems || say "warning: the kernel has no overlayfs; the chroot driver will be unavailable"
  if ! unshare --user --map-root-user true 2>/dev/null; then
    say "warning: user namespaces are unavailable; the chroot driver's rootless mode will fail"
  fi
}

# @execenv/images: qemu-img for disk conversions, e2fsprogs for mkfs.ext4 -d and debugfs.
setup_images() {
  apt_install qemu-utils e2fsprogs
}

setup_common
setup_agent
setup_chroot
setup_images

# Each further backend's setup lives in its own file, tools/setup/<backend>.sh, which defines
# setup_<backend> with the helpers above and calls it; sourced in name order.
for part in "$(dirname "${BASH_SOURCE[0]}")"/setup/*.sh; do
  [ -e "$part" ] || continue
  # shellcheck source=/dev/null
  source "$part"
done
say "ok"
