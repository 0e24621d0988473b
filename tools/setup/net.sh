# @execenv/net: bridges and veth/tap links (iproute2), NAT and isolation rules (nftables, with
# iptables as the fallback), DNS and DHCP per bridge (dnsmasq-base), namespaces entered with
# nsenter (util-linux); ping from iputils for the e2e checks.
# Sourced by tools/setup-host.sh, which defines say, die and apt_install.

setup_net() {
  apt_install iproute2 nftables iptables dnsmasq-base util-linux iputils-ping procps
  # NAT networks forward their environments' traffic; turn forwarding on only when the host has it off.
  if [ "$(cat /proc/sys/net/ipv4/ip_forward 2>/dev/null || echo 0)" != 1 ]; then
    sysctl -q -w net.ipv4.ip_forward=1 && say "enabled net.ipv4.ip_forward"
  fi
  [ -c /dev/net/tun ] || say "warning: /dev/net/tun is missing; tap links for QEMU will be unavailable"
  nft list tables >/dev/null 2>&1 || say "warning: nft cannot list tables; @execenv/net falls back to iptables"
}

setup_net
