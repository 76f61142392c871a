#!/usr/bin/env bash
# `make images`: import the local test images into a running berthd (DESIGN.md section 7).
#
#   busybox:latest                  <- busybox-rootfs.tar           (CMD ["sh"])
#   debian:bookworm, debian:latest  <- debian-bookworm-minbase.tar  (CMD ["bash"])
#
# DOCKER_HOST defaults to unix:///run/berth/berth.sock (what `make run` starts). The fixtures are
# built first if they are missing (scripts/build-fixtures.sh; debootstrap needs root and a mirror).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export DOCKER_HOST=${DOCKER_HOST:-unix:///run/berth/berth.sock}
DOCKER=${DOCKER:-docker}
PATH_ENV='ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

mapfile -t paths < <(bash "$HERE/build-fixtures.sh" busybox debian)
busybox_tar=${paths[0]}
debian_tar=${paths[1]}

if ! "$DOCKER" version >/dev/null 2>&1; then
    echo "load-images: no engine answers at $DOCKER_HOST (start one with: make run)" >&2
    exit 1
fi

"$DOCKER" import --change "$PATH_ENV" --change 'CMD ["sh"]' "$busybox_tar" busybox:latest
"$DOCKER" import --change "$PATH_ENV" --change 'CMD ["bash"]' "$debian_tar" debian:bookworm
"$DOCKER" tag debian:bookworm debian:latest
"$DOCKER" image ls busybox
"$DOCKER" image ls debian
