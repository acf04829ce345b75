#!/usr/bin/env bash
# Build the evaluation sandbox image from Debian packages, without any image registry.
#
#   docker/sandbox/build-debian.sh            # build unless the image already exists
#   docker/sandbox/build-debian.sh --force    # rebuild
#
# Environment:
#   SANDBOX_IMAGE   image name (default local/bench-sandbox:latest)
#   DEBIAN_MIRROR   Debian mirror URI (default: first URI in /etc/apt/sources.list.d/*.sources)
#   PYTHON          Python used to fetch the evalplus wheel with pip (default python3)
#   DEBIAN_SUITE    Debian release (default bookworm: Python 3.11, see below)
#
# The image holds only the interpreter, numpy, psutil and evalplus 0.3.1 (no deps). The
# harness's runner code is mounted read-only at run time, so code changes need no rebuild.
#
# Why bookworm (Python 3.11) and not forky (Python 3.14): EvalPlus's own image is
# python:3.11-slim and the HumanEval+ inputs were validated with Python <= 3.11 float
# semantics. Under 3.14 (3.12+ changed float sum() to compensated summation) the canonical
# find_zero (HumanEval/32) misses its tolerance on 7 of 788 plus inputs, so even the
# reference solution would be scored a failure. See docs/EVALUATION.md.
set -euo pipefail

IMAGE="${SANDBOX_IMAGE:-local/bench-sandbox:latest}"
SUITE="${DEBIAN_SUITE:-bookworm}"
EVALPLUS_VERSION="0.3.1"
SCRIPT="/usr/share/debootstrap/scripts/$SUITE"
[ -f "$SCRIPT" ] || SCRIPT="/usr/share/debootstrap/scripts/sid"  # e.g. forky on an older host
PYTHON="${PYTHON:-python3}"
FORCE=0

for arg in "$@"; do
    case "$arg" in
        --force) FORCE=1 ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "build-debian.sh: unknown argument '$arg' (use --force or --help)" >&2; exit 2 ;;
    esac
done

die() { echo "build-debian.sh: $*" >&2; exit 1; }

command -v docker >/dev/null || die "docker CLI not found; install docker.io"
docker info >/dev/null 2>&1 || die "Docker engine unreachable; start it (e.g. 'nohup dockerd >/var/log/dockerd.log 2>&1 &')"
command -v debootstrap >/dev/null || die "debootstrap not found; apt-get install -y debootstrap"
[ -f "$SCRIPT" ] || die "$SCRIPT missing; install a newer debootstrap"
[ "$(id -u)" = 0 ] || die "debootstrap needs root; re-run as root"

if [ "$FORCE" = 0 ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "image $IMAGE already exists (use --force to rebuild)"
    exit 0
fi

find_mirror() {
    if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
    local uri
    uri="$(grep -h '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | awk '{print $2}' | grep -v -- '-security' | head -n1 || true)"
    if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
        uri="$(awk '$1=="deb" {print $2}' /etc/apt/sources.list | grep -v -- '-security' | head -n1 || true)"
    fi
    echo "${uri:-http://deb.debian.org/debian}"
}

MIRROR="$(find_mirror)"
WORK="$(mktemp -d /tmp/bench-sandbox-build.XXXXXX)"
ROOTFS="$WORK/rootfs"
trap 'rm -rf "$WORK"' EXIT

echo "debootstrap $SUITE from $MIRROR into $ROOTFS"
debootstrap --variant=minbase --include=python3,python3-numpy,python3-psutil \
    "$SUITE" "$ROOTFS" "$MIRROR" "$SCRIPT" >"$WORK/debootstrap.log" 2>&1 \
    || { tail -n 30 "$WORK/debootstrap.log" >&2; die "debootstrap failed (log above); set DEBIAN_MIRROR?"; }

echo "installing evalplus $EVALPLUS_VERSION (no dependencies) into /opt/evalplus"
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: \
    "evalplus==$EVALPLUS_VERSION" -d "$WORK/wheels"
"$PYTHON" -m pip install --quiet --no-deps --no-compile \
    --target "$ROOTFS/opt/evalplus" "$WORK"/wheels/evalplus-*.whl
# Byte-compile with the image's own interpreter (the root file system is read-only at run time).
chroot "$ROOTFS" python3 -m compileall -q /opt/evalplus >/dev/null

rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* \
    "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/*

PYVER="$(chroot "$ROOTFS" python3 -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"
echo "importing image $IMAGE (python $PYVER)"
tar -C "$ROOTFS" -c . | docker import \
    -c 'ENV PYTHONPATH=/opt/evalplus' \
    -c 'ENV PYTHONDONTWRITEBYTECODE=1' \
    -c 'ENV LANG=C.UTF-8' \
    -c 'USER 65534:65534' \
    -c 'WORKDIR /tmp' \
    -c 'CMD ["python3"]' \
    -c "LABEL bench.harness=llama-bench bench.role=sandbox-image bench.evalplus=$EVALPLUS_VERSION bench.python=$PYVER" \
    - "$IMAGE" >/dev/null
docker run --rm --network none "$IMAGE" python3 -c \
    'import evalplus.eval, numpy, psutil; print("sandbox image ok: evalplus", evalplus.__version__)'
