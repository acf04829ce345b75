#!/usr/bin/env bash
# Build the CPU llama-server image from Debian packages, without a registry.
#
# Debian testing (forky) packages llama.cpp as `llama.cpp-tools` (/usr/bin/llama-server).
# A minimal forky root filesystem is made with debootstrap and imported as an image
# whose entrypoint is llama-server, so `docker run IMAGE -m /models/x.gguf ...` works
# like the upstream ghcr.io/ggml-org/llama.cpp:server image.
#
# Usage: docker/llama-server/build-debian.sh [--force]
# Environment:
#   LLAMA_IMAGE     image name (default local/llama.cpp:server)
#   DEBIAN_MIRROR   Debian mirror URI (default: first Debian URI in the apt sources)
#   DEBIAN_SUITE    suite to bootstrap (default forky; must ship llama.cpp-tools)
set -euo pipefail

IMAGE="${LLAMA_IMAGE:-local/llama.cpp:server}"
SUITE="${DEBIAN_SUITE:-forky}"
PACKAGES="llama.cpp-tools,curl,ca-certificates"
LABEL_KIND="bench.image=llama-server"

log() { printf '[llama-image] %s\n' "$*"; }
die() { printf '[llama-image] ERROR: %s\n' "$*" >&2; exit 1; }

force=0
for arg in "$@"; do
    case "$arg" in
        --force) force=1 ;;
        -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument: $arg (use --force to rebuild)" ;;
    esac
done

command -v docker >/dev/null 2>&1 || die "docker CLI not found (apt-get install docker.io)"
docker info >/dev/null 2>&1 || die "Docker daemon not reachable (start dockerd)"

old_id="$(docker image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null || true)"
if [[ "$force" -eq 0 && -n "$old_id" ]]; then
    log "image $IMAGE already present (use --force to rebuild)"
    exit 0
fi

# Find a Debian mirror in the machine's apt configuration (deb822 .sources files first,
# then one-line sources.list entries); skip security/updates archives.
detect_mirror() {
    local f uri
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -r "$f" ]] || continue
        while read -r uri; do
            case "$uri" in
                *security*|*updates*) continue ;;
                http://*/debian|https://*/debian|http://*/debian/|https://*/debian/)
                    printf '%s\n' "${uri%/}"; return 0 ;;
            esac
        done < <(awk 'tolower($1) == "uris:" { for (i = 2; i <= NF; i++) print $i }' "$f")
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -r "$f" ]] || continue
        while read -r uri; do
            case "$uri" in
                *security*|*updates*) continue ;;
                http://*/debian|https://*/debian|http://*/debian/|https://*/debian/)
                    printf '%s\n' "${uri%/}"; return 0 ;;
            esac
        done < <(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; break } }' "$f")
    done
    return 1
}

MIRROR="${DEBIAN_MIRROR:-}"
if [[ -z "$MIRROR" ]]; then
    MIRROR="$(detect_mirror || true)"
    [[ -n "$MIRROR" ]] || MIRROR="http://deb.debian.org/debian"
fi

command -v debootstrap >/dev/null 2>&1 || die "debootstrap not found (apt-get install debootstrap)"
[[ "$(id -u)" -eq 0 ]] || die "debootstrap needs root"
# forky may be newer than the installed debootstrap; the sid script handles any testing suite.
SCRIPT=/usr/share/debootstrap/scripts/sid
[[ -r "$SCRIPT" ]] || die "missing $SCRIPT (debootstrap installation incomplete)"

workdir="$(mktemp -d "${TMPDIR:-/tmp}/llama-image.XXXXXX")"
cleanup() { rm -rf --one-file-system "$workdir"; }
trap cleanup EXIT
rootfs="$workdir/rootfs"

start=$(date +%s)
log "debootstrap $SUITE from $MIRROR (packages: $PACKAGES)"
if ! debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$rootfs" "$MIRROR" "$SCRIPT" \
        >"$workdir/debootstrap.log" 2>&1; then
    tail -n 30 "$workdir/debootstrap.log" >&2
    [[ -f "$rootfs/debootstrap/debootstrap.log" ]] && tail -n 30 "$rootfs/debootstrap/debootstrap.log" >&2
    die "debootstrap failed (mirror $MIRROR; set DEBIAN_MIRROR to override)"
fi
[[ -x "$rootfs/usr/bin/llama-server" ]] || die "llama-server missing from the root filesystem"

# Slim the image: package caches and docs are not needed at run time.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
       "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
       "$rootfs"/debootstrap

version="$(dpkg-query --admindir="$rootfs/var/lib/dpkg" -W -f='${Version}' llama.cpp-tools 2>/dev/null || echo unknown)"
created="$(date -u +%Y-%m-%dT%H:%M:%SZ)"

log "importing as $IMAGE (llama.cpp-tools $version)"
tar --numeric-owner -C "$rootfs" -c . | docker import \
    -c 'ENTRYPOINT ["/usr/bin/llama-server"]' \
    -c 'EXPOSE 8080' \
    -c "LABEL $LABEL_KIND" \
    -c "LABEL org.opencontainers.image.title=llama-server" \
    -c "LABEL org.opencontainers.image.description=\"llama.cpp server (CPU) from Debian $SUITE packages\"" \
    -c "LABEL org.opencontainers.image.version=$version" \
    -c "LABEL org.opencontainers.image.created=$created" \
    -c "LABEL bench.debian.suite=$SUITE" \
    -m "llama.cpp-tools $version from Debian $SUITE" \
    - "$IMAGE" >/dev/null

new_id="$(docker image inspect -f '{{.Id}}' "$IMAGE")"
if [[ -n "$old_id" && "$old_id" != "$new_id" ]]; then
    # Drop the replaced image unless a container still uses it.
    docker image rm "$old_id" >/dev/null 2>&1 || log "previous image ${old_id:7:12} still in use; kept"
fi

elapsed=$(( $(date +%s) - start ))
size="$(docker image inspect -f '{{.Size}}' "$IMAGE")"
log "built $IMAGE in ${elapsed}s ($(( size / 1000000 )) MB)"
log "llama-server: $(docker run --rm "$IMAGE" --version 2>&1 | grep -m1 -i version || true)"
