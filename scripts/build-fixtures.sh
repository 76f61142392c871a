#!/usr/bin/env bash
# Build the test image fixtures (DESIGN.md section 7) into a cache; rebuild only what is missing.
#
#   scripts/build-fixtures.sh [busybox|debian|big]...     (no argument: all three)
#
# Cache dir: $BERTH_TEST_CACHE (default /var/cache/berth-test). Debian mirror: $BERTH_DEBIAN_MIRROR,
# else the one apt uses. Each artifact is built in a temp dir under the cache, then renamed into
# place, under its own flock, so concurrent runs wait for each other instead of racing.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${BERTH_TEST_CACHE:-/var/cache/berth-test}
BUSYBOX_TAR=$CACHE/busybox-rootfs.tar
DEBIAN_TAR=$CACHE/debian-bookworm-minbase.tar
BIG_TAR=$CACHE/big-3layer.tar
# Fixed mtime for the busybox rootfs so its tarball, and so the imported image's layer, are stable.
FIXED_MTIME=@1704067200

log() { printf 'build-fixtures: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

mkdir -p "$CACHE"

# Run "$@" holding the lock for one artifact.
with_lock() {
    local name=$1
    shift
    (
        flock 9
        "$@"
    ) 9>"$CACHE/.$name.lock"
}

# Unmount everything under $1 (debootstrap mounts proc/sys in its target), deepest first.
unmount_under() {
    local dir=$1 mp
    [ -d "$dir" ] || return 0
    dir=$(realpath "$dir")
    while read -r mp; do
        umount -R "$mp" 2>/dev/null || umount -l "$mp" || true
    done < <(awk -v d="$dir/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r)
}

# Remove a temp dir, refusing to recurse into anything still mounted there.
remove_tmp() {
    local dir=$1
    [ -d "$dir" ] || return 0
    unmount_under "$dir"
    if awk -v d="$(realpath "$dir")/" 'index($5, d) == 1 { found = 1 } END { exit !found }' \
        /proc/self/mountinfo; then
        log "warning: mounts remain under $dir; leaving it in place"
        return 0
    fi
    rm -rf --one-file-system "$dir"
}

# Print the Debian archive URI apt uses for bookworm (deb822 .sources or one-line .list files).
apt_mirror() {
    python3 - <<'EOF'
import glob, re, sys

def paragraphs(text):
    for block in re.split(r"\n\s*\n", text):
        fields, key = {}, None
        for line in block.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            if line[0] in " \t" and key:
                fields[key] += " " + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                fields[key] = value.strip()
        yield fields

def candidates():
    for path in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list"))]:
        try:
            lines = open(path, encoding="utf-8").read().splitlines()
        except OSError:
            continue
        for line in lines:
            words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
            if len(words) >= 3 and words[0] == "deb":
                yield words[1], [words[2]]
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        try:
            text = open(path, encoding="utf-8").read()
        except OSError:
            continue
        for p in paragraphs(text):
            if p.get("enabled", "yes").lower() == "no" or "deb" not in p.get("types", "").split():
                continue
            for uri in p.get("uris", "").split():
                yield uri, p.get("suites", "").split()

for uri, suites in candidates():
    if any(s in ("bookworm", "stable") for s in suites):
        print(uri.rstrip("/"))
        sys.exit(0)
sys.exit(1)
EOF
}

build_busybox() {
    if [ -s "$BUSYBOX_TAR" ]; then return 0; fi
    local bb=/bin/busybox tmp root applet
    dpkg-query -S "$bb" 2>/dev/null | grep -q '^busybox-static:' \
        || die "$bb is not from busybox-static (apt-get install busybox-static)"
    log "building $BUSYBOX_TAR"
    tmp=$(mktemp -d "$CACHE/.tmp-busybox.XXXXXX")
    trap 'remove_tmp "$tmp"' EXIT
    root=$tmp/rootfs
    mkdir -p "$root"/{bin,dev,etc,home,proc,root,sys,tmp,usr/bin,usr/sbin,sbin,var}
    install -m 0755 "$bb" "$root/bin/busybox"
    while read -r applet; do
        [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
    done < <("$bb" --list)
    printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' \
        'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' >"$root/etc/passwd"
    printf '%s\n' 'root:x:0:' 'nobody:x:65534:' >"$root/etc/group"
    chmod 0644 "$root/etc/passwd" "$root/etc/group"
    find "$root" -type d -exec chmod 0755 {} +
    chmod 1777 "$root/tmp"
    chmod 0700 "$root/root"
    # Sorted names, fixed mtimes and owners, no ./ prefix: the same bytes on every machine.
    (cd "$root" && LC_ALL=C tar --create --file "$tmp/out.tar" --format=gnu --sort=name \
        --mtime="$FIXED_MTIME" --owner=0 --group=0 --numeric-owner \
        --no-acls --no-xattrs --no-selinux $(LC_ALL=C ls -A))
    sync "$tmp/out.tar"
    mv -f "$tmp/out.tar" "$BUSYBOX_TAR"
    remove_tmp "$tmp"
    trap - EXIT
}

build_debian() {
    if [ -s "$DEBIAN_TAR" ]; then return 0; fi
    [ "$(id -u)" -eq 0 ] || die "debootstrap needs root"
    command -v debootstrap >/dev/null || die "debootstrap is not installed"
    local mirror tmp root
    mirror=${BERTH_DEBIAN_MIRROR:-$(apt_mirror || true)}
    if [ -z "$mirror" ]; then
        mirror=http://deb.debian.org/debian
        log "warning: no bookworm source found in apt's configuration; using $mirror"
    fi
    log "building $DEBIAN_TAR (debootstrap from $mirror; this takes minutes)"
    mkdir -p "$CACHE/debootstrap-debs"
    tmp=$(mktemp -d "$CACHE/.tmp-debian.XXXXXX")
    trap 'remove_tmp "$tmp"' EXIT
    root=$tmp/rootfs
    # --cache-dir keeps the downloaded .debs, so a rebuild downloads nothing.
    if ! debootstrap --variant=minbase --cache-dir="$CACHE/debootstrap-debs" \
        bookworm "$root" "$mirror" >"$tmp/debootstrap.log" 2>&1; then
        tail -30 "$tmp/debootstrap.log" >&2
        [ -f "$root/debootstrap/debootstrap.log" ] && tail -30 "$root/debootstrap/debootstrap.log" >&2
        die "debootstrap failed"
    fi
    unmount_under "$root"
    # debootstrap copies the host's resolv.conf and hostname; engines bind-mount their own.
    rm -f "$root/etc/resolv.conf" "$root/etc/hostname"
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/tmp/* \
        "$root"/var/log/*.log "$root/debootstrap"
    (cd "$root" && LC_ALL=C tar --create --file "$tmp/out.tar" --sort=name --numeric-owner \
        --anchored --exclude='proc/*' --exclude='sys/*' --exclude='dev/*' $(LC_ALL=C ls -A))
    sync "$tmp/out.tar"
    mv -f "$tmp/out.tar" "$DEBIAN_TAR"
    remove_tmp "$tmp"
    trap - EXIT
}

build_big() {
    if [ -s "$BIG_TAR" ]; then return 0; fi
    [ -s "$BUSYBOX_TAR" ] || die "$BUSYBOX_TAR is missing"
    local tmp
    log "building $BIG_TAR"
    tmp=$(mktemp -d "$CACHE/.tmp-big.XXXXXX")
    trap 'remove_tmp "$tmp"' EXIT
    python3 "$HERE/make_big_image.py" --base-layer "$BUSYBOX_TAR" --out "$tmp/out.tar" >&2
    sync "$tmp/out.tar"
    mv -f "$tmp/out.tar" "$BIG_TAR"
    remove_tmp "$tmp"
    trap - EXIT
}

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(busybox debian big)
paths=()
for t in "${targets[@]}"; do
    case $t in
        busybox) with_lock busybox build_busybox; paths+=("$BUSYBOX_TAR") ;;
        debian) with_lock debian build_debian; paths+=("$DEBIAN_TAR") ;;
        big)
            with_lock busybox build_busybox
            with_lock big build_big
            paths+=("$BIG_TAR")
            ;;
        *) die "unknown fixture '$t' (busybox, debian, big)" ;;
    esac
done
printf '%s\n' "${paths[@]}"
