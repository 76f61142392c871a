#!/usr/bin/env bash
# Split-mode launcher: one berthd process per service, on <exec-root>/<service>.sock, and a
# gateway serving the Docker API. Usage: deploy/split.sh [--data-root D] [--exec-root E] [-H URL]...
# SIGTERM/SIGINT stop every process it started (and only those).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
berthd=${BERTHD:-$here/.venv/bin/berthd}
exec_root=/run/berth
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  [ "${args[i]}" = "--exec-root" ] && exec_root=${args[i + 1]}
done
# Services that exist today; the gateway needs them up first.
services=(events images volumes networks containers registry)
pids=()
stop() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap stop TERM INT
for s in "${services[@]}"; do
  "$berthd" --service "$s" "${args[@]}" &
  pids+=($!)
done
for s in "${services[@]}"; do
  for _ in $(seq 1 300); do [ -S "$exec_root/$s.sock" ] && break; sleep 0.1; done
  [ -S "$exec_root/$s.sock" ] || { echo "split.sh: $s did not start" >&2; stop; exit 1; }
done
"$berthd" --service gateway "${args[@]}" &
pids+=($!)
wait -n "${pids[@]}" || true
stop
