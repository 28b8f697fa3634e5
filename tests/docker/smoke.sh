#!/usr/bin/env bash
# Smoke test of the container image: build it with podman and prove that it
# serves, forwards to a (fake) Criteo, runs as non-root and has a HEALTHCHECK.
#
# No container registry is reachable on these machines, so the base image is
# made locally (common.sh: debootstrap + podman import, cached as
# localhost/criteo-proxy-base:bookworm) and passed as BASE_IMAGE. The container
# is run with the README's Docker example's arguments, which carry no --host:
# it must still listen on 0.0.0.0 (the image's CRITEO_PROXY_HOST).
# Needs root (apt-get, debootstrap, chroot). Traffic stays on loopback.
#
#   tests/docker/smoke.sh             # from anywhere; builds from the repo root
#   PYTHON=/path/to/python tests/docker/smoke.sh
#
# PYTHON (else .venv/bin/python, else python3) must have the package installed:
# it runs the fake Criteo on the host.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/../.." && pwd)"
IMAGE=localhost/criteo-proxy:smoke
TEST_NAME=SMOKE
START=$SECONDS
# shellcheck source=tests/docker/common.sh
source "$REPO/tests/docker/common.sh"

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

WORK="$(mktemp -d)"
CONTAINER=""
FAKE_PID=""
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
    cleanup_base_rootfs
    if ((rc != 0)) && [[ -s $WORK/fake.log ]]; then
        echo "--- fake Criteo log ---" >&2
        tail -n 20 "$WORK/fake.log" >&2 || true
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
prepare_podman

# --- base image (made once, then cached) --------------------------------------
ensure_base_image

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
# The arguments are the README's Docker example's (`... criteo-proxy --log-format json`),
# plus where this test's fake and port are: no --host, so the image's
# CRITEO_PROXY_HOST must keep the listen address on 0.0.0.0.
log "proxy container on port $PROXY_PORT, run with --log-format json and no --host"
CONTAINER="$(podman run -d --network host \
    -e CRITEO_CLIENT_ID=demo-client -e CRITEO_CLIENT_SECRET=demo-secret \
    -e "CRITEO_PROXY_HEALTH_URL=http://127.0.0.1:$PROXY_PORT/_proxy/health" \
    "$IMAGE" --log-format json --port "$PROXY_PORT" --upstream "http://127.0.0.1:$FAKE_PORT" \
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

STATUS="$(curl -sS -o "$WORK/body" -w '%{http_code}' "http://127.0.0.1:$PROXY_PORT/2026-07/advertisers/me")" ||
    fail "forwarded request failed"
[[ $STATUS == 200 ]] || fail "GET /2026-07/advertisers/me answered $STATUS: $(head -c 500 "$WORK/body")"
grep -q 'Demo advertiser' "$WORK/body" || fail "forwarded answer lacks 'Demo advertiser': $(head -c 500 "$WORK/body")"
log "GET /2026-07/advertisers/me -> 200, $(wc -c <"$WORK/body") bytes, contains 'Demo advertiser'"

SERVING="$(podman logs "$CONTAINER" 2>/dev/null | grep '"event":"serving"' | head -n 1)"
[[ $SERVING == *"\"url\":\"http://0.0.0.0:$PROXY_PORT\""* ]] ||
    fail "with arguments after the image name it does not listen on 0.0.0.0: ${SERVING:-no serving line}"
log "arguments after the image name keep the listen address: $SERVING"

# Another subcommand as the arguments, as the README shows (`... criteo-proxy check`).
podman run --rm --network host -e CRITEO_CLIENT_ID=demo-client -e CRITEO_CLIENT_SECRET=demo-secret \
    "$IMAGE" check --upstream "http://127.0.0.1:$FAKE_PORT" >"$WORK/check.out" 2>&1 ||
    { cat "$WORK/check.out" >&2; fail "criteo-proxy check in the image failed"; }
log "podman run IMAGE check -> $(tail -n 1 "$WORK/check.out")"

# Several proxies on Redis (README "Scaling out") need the [redis] extra in the image.
podman run --rm --network host --entrypoint python3 "$IMAGE" \
    -c 'import redis.asyncio, cryptography.hazmat.primitives.ciphers.aead' ||
    fail "the image lacks redis-py or cryptography (the [redis] extra)"
log "the image has the [redis] extra (redis-py, cryptography)"

log "SMOKE PASSED in $((SECONDS - START)) s (image $IMAGE, $((SIZE / 1024 / 1024)) MiB)"
