# LXD 5.0 from Debian: the daemon started by hand (PID 1 is not systemd, and
# postinst scripts cannot start services), then initialised once with a
# preseed: a `dir` storage pool and the default profile's root disk. Never
# `lxd init --auto`: it hangs looking for a free subnet. Sourced by
# tools/setup-host.sh, which defines say, die and apt_install.

LXD_LOG=/var/log/lxd/execenv-lxd.log

lxd_running() {
  timeout 5 lxd waitready --timeout=3 >/dev/null 2>&1
}

start_lxd_daemon() {
  lxd_running && return 0
  mkdir -p "$(dirname "$LXD_LOG")"
  say "starting the LXD daemon (log: $LXD_LOG)"
  # setsid: the daemon outlives this script and the shell that ran it.
  setsid lxd --group lxd --logfile="$LXD_LOG" </dev/null >/dev/null 2>&1 &
  lxd waitready --timeout=120 || die "the LXD daemon did not become ready; see $LXD_LOG"
}

# Initialised means the default storage pool exists and the default profile has a root disk.
lxd_initialised() {
  lxc storage show default >/dev/null 2>&1 && lxc profile device get default root pool >/dev/null 2>&1
}

setup_lxd() {
  apt_install lxd lxd-client squashfs-tools xz-utils
  getent group lxd >/dev/null || groupadd --system lxd
  start_lxd_daemon
  if ! lxd_initialised; then
    init_lxd
  fi
  setup_lxd_https
}

init_lxd() {
  say "initialising LXD: a dir storage pool named default and a root disk in the default profile"
  lxd init --preseed <<'PRESEED'
config: {}
networks: []
storage_pools:
- name: default
  driver: dir
profiles:
- name: default
  devices:
    root:
      path: /
      pool: default
      type: disk
PRESEED
  lxd_initialised || die "LXD did not take the preseed"
}

# The e2e suite also reaches the daemon over HTTPS with a client certificate: on loopback only.
setup_lxd_https() {
  [ -n "$(lxc config get core.https_address)" ] && return 0
  say "LXD listens on https://127.0.0.1:8443 (loopback only)"
  lxc config set core.https_address 127.0.0.1:8443
}

setup_lxd
