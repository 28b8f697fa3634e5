#!/usr/bin/env bash
# Smoke test of the container image: build it with podman and prove that it
# serves, forwards to a (fake) Criteo, runs as non-root and has a HEALTHCHECK.
#
# No container registry is reachable on these machines, so the base image is
# made locally (debootstrap + podman import, cached as
# localhost/criteo-proxy-base:bookworm) and passed as BASE_IMAGE.
# Needs root (apt-get, debootstrap, chroot). Traffic stays on loopback.
#
#   tests/docker/smoke.sh             # from anywhere; builds from the repo root
#   PYTHON=/path/to/python tests/docker/smoke.sh
#
# PYTHON (else .venv/bin/python, else python3) must have the package installed:
# it runs the fake Criteo on the host.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/../.." && pwd)"
BASE_IMAGE=localhost/criteo-proxy-base:bookworm
IMAGE=localhost/criteo-proxy:smoke
SUITE=bookworm
START=$SECONDS

log() { printf '==> %s\n' "$*"; }
fail() {
    printf 'SMOKE FAILED: %s\n' "$*" >&2
    exit 1
}

[[ $(id -u) -eq 0 ]] || fail "run as root (apt-get, debootstrap and chroot need it)"

# --- Python for the fake Criteo (checked first: fail before a long build) ------
if [[ -n ${PYTHON:-} ]]; then
    PY="$PYTHON"
elif [[ -x $REPO/.venv/bin/python ]]; then
    PY="$REPO/.venv/bin/python"
else
    PY=python3
fi
(cd / && "$PY" -c 'import aiohttp, proxy.fakes.criteo') 2>/dev/null ||
    fail "$PY cannot import proxy.fakes.criteo: set PYTHON to a Python with the package installed"

# --- tools --------------------------------------------------------------------
missing=()
for pkg in podman runc debootstrap uidmap slirp4netns curl; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' ||
        missing+=("$pkg")
done
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# crun and podman's default ulimits fail on these machines: runc and explicit limits.
WORK="$(mktemp -d)"
cat >"$WORK/containers.conf" <<'EOF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=20000:20000"]

[engine]
runtime = "runc"
EOF
export CONTAINERS_CONF="$WORK/containers.conf"

CONTAINER=""
FAKE_PID=""
ROOTFS=""
cleanup() {
    local rc=$?
    if [[ -n $CONTAINER ]]; then
        if ((rc != 0)); then
            echo "--- container log ---" >&2
            podman logs "$CONTAINER" >&2 || true
        fi
        podman rm -f "$CONTAINER" >/dev/null 2>&1 || true
    fi
    if [[ -n $FAKE_PID ]]; then
        kill "$FAKE_PID" 2>/dev/null || true
        wait "$FAKE_PID" 2>/dev/null || true
    fi
    if [[ -n $ROOTFS ]]; then
        umount "$ROOTFS/proc" 2>/dev/null || true
    fi
    if ((rc != 0)) && [[ -s $WORK/fake.log ]]; then
        echo "--- fake Criteo log ---" >&2
        tail -n 20 "$WORK/fake.log" >&2 || true
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- base image (made once, then cached) --------------------------------------
if podman image exists "$BASE_IMAGE"; then
    log "base image $BASE_IMAGE cached"
else
    # Only the package registries are reachable: use the Debian mirror apt uses.
    MIRROR="$(
        { grep -rhoE '^URIs:[[:space:]]*[^[:space:]]+' /etc/apt/sources.list.d/*.sources 2>/dev/null |
            awk '{print $2}'
          grep -rhoE '^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?[^[:space:]]+' \
            /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk '{print $NF}'
        } | grep -E '/debian/?$' | head -n 1 || true
    )"
    MIRROR="${MIRROR:-http://deb.debian.org/debian}"
    log "building base image from $MIRROR ($SUITE, minbase)"
    ROOTFS="$WORK/rootfs"
    debootstrap --variant=minbase "$SUITE" "$ROOTFS" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
        { tail -n 20 "$WORK/debootstrap.log" >&2; fail "debootstrap failed"; }

    # The registries are reached through an intercepting gateway: its CA goes
    # into the base image's system bundle, and pip (which otherwise trusts
    # only its own certifi bundle) is pointed at that bundle, as on the host.
    mkdir -p "$ROOTFS/usr/local/share/ca-certificates"
    if compgen -G '/usr/local/share/ca-certificates/*' >/dev/null; then
        cp -a /usr/local/share/ca-certificates/. "$ROOTFS/usr/local/share/ca-certificates/"
    fi
    [[ -f /etc/pip.conf ]] && cp /etc/pip.conf "$ROOTFS/etc/pip.conf"
    if [[ -d /etc/xdg/pip ]]; then
        mkdir -p "$ROOTFS/etc/xdg"
        cp -a /etc/xdg/pip "$ROOTFS/etc/xdg/"
    fi
    cp -L /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
    mount -t proc proc "$ROOTFS/proc"
    chroot "$ROOTFS" /bin/sh -ec '
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends \
            python3 python3-venv python3-pip ca-certificates >/dev/null
        update-ca-certificates >/dev/null
        apt-get clean
        rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
    ' >"$WORK/chroot.log" 2>&1 || { tail -n 20 "$WORK/chroot.log" >&2; fail "installing python3 in the base failed"; }
    umount "$ROOTFS/proc"
    rm -f "$ROOTFS/etc/resolv.conf"
    tar -C "$ROOTFS" -c . | podman import - "$BASE_IMAGE" >/dev/null ||
        fail "podman import of the base image failed"
    rm -rf "$ROOTFS"
    ROOTFS=""
    log "base image $BASE_IMAGE made ($((SECONDS - START)) s)"
fi

# --- image --------------------------------------------------------------------
# --format docker keeps HEALTHCHECK (the OCI format drops it); host network
# so that pip reaches PyPI the way the host does.
# --layers=false and removing the previous image first: no untagged images
# pile up from run to run (the build takes seconds without a layer cache).
log "building $IMAGE"
BUILD_START=$SECONDS
podman rmi -f "$IMAGE" >/dev/null 2>&1 || true
(cd "$REPO" && podman build --format docker --network host --layers=false \
    --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$IMAGE" .) >"$WORK/build.log" 2>&1 ||
    { tail -n 30 "$WORK/build.log" >&2; fail "podman build failed"; }
log "image built ($((SECONDS - BUILD_START)) s)"

# --- image metadata -----------------------------------------------------------
USER_CFG="$(podman image inspect --format '{{.Config.User}}' "$IMAGE")"
case "$USER_CFG" in
    "" | 0 | root | 0:* | root:*) fail "image runs as root (User='$USER_CFG')" ;;
esac
log "image user: $USER_CFG"
HEALTH_CFG="$(podman image inspect --format '{{.Config.Healthcheck}}' "$IMAGE")"
[[ $HEALTH_CFG == *"/_proxy/health"* ]] || fail "image has no HEALTHCHECK on /_proxy/health ('$HEALTH_CFG')"
log "image healthcheck: $HEALTH_CFG"
SIZE="$(podman image inspect --format '{{.Size}}' "$IMAGE")"
log "image size: $SIZE bytes ($((SIZE / 1024 / 1024)) MiB)"

# --- fake Criteo on the host --------------------------------------------------
free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
FAKE_PORT="$(free_port)"
PROXY_PORT="$(free_port)"
while [[ $PROXY_PORT == "$FAKE_PORT" ]]; do PROXY_PORT="$(free_port)"; done

log "fake Criteo on 127.0.0.1:$FAKE_PORT"
(cd "$WORK" && exec "$PY" -c '
import sys
from aiohttp import web
from proxy.fakes.criteo import FakeCriteo
web.run_app(FakeCriteo().build_app(), host="127.0.0.1", port=int(sys.argv[1]), print=None)
' "$FAKE_PORT") >"$WORK/fake.log" 2>&1 &
FAKE_PID=$!

# --- run ----------------------------------------------------------------------
# Host network: bridge-mode port publishing does not answer on these machines.
# Without systemd podman cannot schedule the HEALTHCHECK (it says so on
# stderr, kept out of the way): the check is run by hand below, pointed at
# this port with CRITEO_PROXY_HEALTH_URL.
log "proxy container on 127.0.0.1:$PROXY_PORT"
CONTAINER="$(podman run -d --network host \
    -e CRITEO_CLIENT_ID=demo-client -e CRITEO_CLIENT_SECRET=demo-secret \
    -e "CRITEO_PROXY_HEALTH_URL=http://127.0.0.1:$PROXY_PORT/_proxy/health" \
    "$IMAGE" --host 127.0.0.1 --port "$PROXY_PORT" --upstream "http://127.0.0.1:$FAKE_PORT" \
    2>"$WORK/run.err")" ||
    { cat "$WORK/run.err" >&2; fail "podman run failed"; }

deadline=$((SECONDS + 30))
until curl -fsS -o /dev/null "http://127.0.0.1:$PROXY_PORT/_proxy/health" 2>/dev/null; do
    [[ $(podman inspect --format '{{.State.Running}}' "$CONTAINER" 2>/dev/null) == true ]] ||
        fail "the container exited before serving"
    kill -0 "$FAKE_PID" 2>/dev/null || fail "the fake Criteo exited"
    ((SECONDS < deadline)) || fail "no answer on /_proxy/health within 30 s"
    sleep 0.5
done
HEALTH_BODY="$(curl -fsS "http://127.0.0.1:$PROXY_PORT/_proxy/health")"
[[ $HEALTH_BODY == *'"status"'*'"ok"'* ]] || fail "unexpected /_proxy/health body: $HEALTH_BODY"
log "GET /_proxy/health -> $HEALTH_BODY"

podman healthcheck run "$CONTAINER" >/dev/null || fail "the image's HEALTHCHECK failed"
log "podman healthcheck run -> healthy"

STATUS="$(curl -sS -o "$WORK/body" -w '%{http_code}' "http://127.0.0.1:$PROXY_PORT/2025-10/advertisers/me")" ||
    fail "forwarded request failed"
[[ $STATUS == 200 ]] || fail "GET /2025-10/advertisers/me answered $STATUS: $(head -c 500 "$WORK/body")"
grep -q 'Demo advertiser' "$WORK/body" || fail "forwarded answer lacks 'Demo advertiser': $(head -c 500 "$WORK/body")"
log "GET /2025-10/advertisers/me -> 200, $(wc -c <"$WORK/body") bytes, contains 'Demo advertiser'"

log "SMOKE PASSED in $((SECONDS - START)) s (image $IMAGE, $((SIZE / 1024 / 1024)) MiB)"
