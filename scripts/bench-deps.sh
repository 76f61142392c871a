#!/usr/bin/env bash
# Install what `make bench` compares against (dockerd + containerd, podman) and its tools, if missing.
# Package scripts must not start dockerd/containerd as system services: a policy-rc.d that refuses
# is put in place for the install when the machine has none, and removed afterwards.
set -euo pipefail
PACKAGES=(docker.io containerd runc podman hyperfine wrk)
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "bench: installing Debian packages: ${missing[*]}" >&2
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod +x "$policy"
    made_policy=1
fi
trap '[ $made_policy -eq 1 ] && rm -f "$policy"' EXIT
apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
