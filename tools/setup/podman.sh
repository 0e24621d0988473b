# The podman driver (sourced by tools/setup-host.sh, which defines say, die and apt_install).
#
# crun fails on hosts like this one (no CAP_SYS_RESOURCE for its setrlimit of
# RLIMIT_NOFILE, and cgroups in hybrid mode), so podman runs containers with
# runc and default ulimits inside the host's hard limits. Rootless podman
# needs subordinate ids (newuidmap, from uidmap) and slirp4netns for NAT.

# Sets KEY = VALUE in [SECTION] of a TOML file, leaving every other line as it is:
# replaces an uncommented KEY of that section, else adds it below the section's header,
# else appends the section.
podman_conf_set() {
  local file=$1 section=$2 key=$3 value=$4 tmp
  tmp=$(mktemp "$file.XXXXXX")
  awk -v section="[$section]" -v key="$key" -v line="$key = $value" '
    function flush() { if (in_section && !done) { print line; done = 1 } }
    /^[[:space:]]*\[[^]]*\][[:space:]]*$/ {
      header = $0; gsub(/[[:space:]]/, "", header)
      if (in_section) flush()
      in_section = (header == section)
      if (in_section) { seen = 1; print; next }
    }
    in_section && $0 ~ "^[[:space:]]*" key "[[:space:]]*=" { if (!done) { print line; done = 1 }; next }
    { print }
    END {
      if (in_section) flush()
      if (!seen) { print ""; print section; print line }
    }
  ' "$file" > "$tmp"
  if cmp -s "$file" "$tmp"; then
    rm -f "$tmp"
  else
    chmod 0644 "$tmp" && mv "$tmp" "$file"
    say "set $key in [$section] of $file"
  fi
}

setup_podman() {
  apt_install podman runc uidmap slirp4netns containernetworking-plugins iptables
  local conf=/etc/containers/containers.conf
  mkdir -p /etc/containers
  [ -e "$conf" ] || : > "$conf"
  podman_conf_set "$conf" containers default_ulimits '["nofile=20000:20000", "nproc=20000:20000"]'
  podman_conf_set "$conf" engine runtime '"runc"'
  # Rootless podman as execenv-e2e (created by setup_chroot with subordinate ids): its storage and
  # runtime directories live where the e2e suite points HOME and XDG_RUNTIME_DIR, nothing to make here.
  if getent passwd execenv-e2e >/dev/null && ! grep -q '^execenv-e2e:' /etc/subuid; then
    say "warning: execenv-e2e has no subordinate ids; rootless podman will map only its own uid"
  fi
}

setup_podman
