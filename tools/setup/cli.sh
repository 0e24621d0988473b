# The execenv command: its terminal tests drive a real terminal through tmux (send-keys, capture-pane).
# Sourced by tools/setup-host.sh, which defines say, die and apt_install.

setup_cli() {
  apt_install tmux
}

setup_cli
