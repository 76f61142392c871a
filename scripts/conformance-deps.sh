#!/usr/bin/env bash
# What `make conformance` needs beyond `make install`: a docker credential helper and pass/gpg for
# docker-py's credential-store tests.
set -euo pipefail
PACKAGES=(golang-docker-credential-helpers pass gnupg)
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "conformance: installing Debian packages: ${missing[*]}" >&2
apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
