#!/usr/bin/env bash
# Fail (exit 1, with the diff) when libs/berthapi or the descriptor snapshot differ from what
# the protos generate.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

bash "$root/scripts/protos.sh" "$tmp" > /dev/null

rc=0
diff -ru --exclude=__pycache__ --exclude='*.pyc' "$root/libs/berthapi" "$tmp/berthapi" || rc=1
diff -u "$root/protos/api.descriptor.txtpb" "$tmp/api.descriptor.txtpb" || rc=1
if [ "$rc" -ne 0 ]; then
	echo "check-protos: generated code is out of date; run 'make protos' and commit the result" >&2
	exit 1
fi
echo "check-protos: up to date"
