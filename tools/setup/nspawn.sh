# The nspawn driver: systemd-nspawn from systemd-container, nsenter from util-linux.
# Sourced by tools/setup-host.sh, which defines say, die and apt_install.

setup_nspawn() {
  apt_install systemd-container util-linux mount coreutils
  # Without systemd as PID 1, /run is whatever the host made it; on a disk filesystem nspawn refuses
  # to remove its propagation directories ("Attempted to remove disk file system") and warns on every
  # run. A tmpfs of its own fixes that (the driver mounts one too when this was not run).
  local dir=/run/systemd/nspawn
  mkdir -p "$dir"
  if [ "$(findmnt -n -o FSTYPE --target "$dir" 2>/dev/null || true)" != tmpfs ]; then
    mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs "$dir"
    say "mounted a tmpfs on $dir for systemd-nspawn"
  fi
  grep -qw overlay /proc/filesystems || say "warning: the kernel has no overlayfs; the nspawn driver will be unavailable"
}

setup_nspawn
