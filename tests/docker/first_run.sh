#!/usr/bin/env bash
# The README's first command, the way a fresh machine meets it.
#
# In a container of plain Debian (the smoke test's base image: the system python3
# with its venv module, no criteo-proxy, no venv, nothing installed with pip), from a
# copy of this repository's files:
#   1. run the README's first command line, read from README.md (never retyped here);
#   2. wait for the curl line the demo prints, run it as printed: it must answer 200
#      with the fake's advertiser, under the live API version the README shows;
#   3. the console's address it prints must answer 200 too.
# The README's line must install with pip inside a venv: Debian's system Python refuses
# `pip install .` (PEP 668, externally-managed-environment).
#
#   tests/docker/first_run.sh        # root, podman (see common.sh); a few minutes at most
#
# Host network, as the smoke test: pip reaches PyPI the way the host does; the demo
# listens on 127.0.0.1 (on a free port if 8080 is taken on this machine).
set -euo pipefail

REPO="$(cd "$(dirname "$0")/../.." && pwd)"
TEST_NAME=FIRST-RUN
START=$SECONDS
# shellcheck source=tests/docker/common.sh
source "$REPO/tests/docker/common.sh"

# The first line of the README's first shell block: the command that runs the demo.
FIRST_LINE="$(awk '/^```sh$/ { block = 1; next } block { print; exit }' "$REPO/README.md")"
[[ $FIRST_LINE == *"criteo-proxy demo"* ]] ||
    fail "the README's first command does not run the demo: $FIRST_LINE"
log "README's first line: $FIRST_LINE"

WORK="$(mktemp -d)"
CONTAINER=""
cleanup() {
    local rc=$?
    if [[ -n $CONTAINER ]]; then
        if ((rc != 0)); then
            echo "--- container output ---" >&2
            podman logs "$CONTAINER" 2>&1 | tail -n 40 >&2 || true
        fi
        podman rm -f "$CONTAINER" >/dev/null 2>&1 || true
    fi
    cleanup_base_rootfs
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
prepare_podman
ensure_base_image

# The repository as a clone would have it: tracked files and new ones, not what
# .gitignore leaves out (.venv, caches, build output).
mkdir "$WORK/criteo-proxy"
(cd "$REPO" && git ls-files -z --cached --others --exclude-standard |
    xargs -0 tar -c --ignore-failed-read 2>/dev/null) | tar -x -C "$WORK/criteo-proxy"

# The line as a user pastes it into bash, in the repository's directory.
CONTAINER="$(podman create --network host --workdir /root/criteo-proxy \
    "$BASE_IMAGE" bash -c "$FIRST_LINE")"
podman cp "$WORK/criteo-proxy" "$CONTAINER:/root/criteo-proxy"
podman start "$CONTAINER" >/dev/null
log "running it in $BASE_IMAGE"

CURL_LINE=""
deadline=$((SECONDS + 400))
until [[ -n $CURL_LINE ]]; do
    [[ $(podman inspect --format '{{.State.Running}}' "$CONTAINER") == true ]] ||
        fail "the first line exited before the demo printed its curl line"
    ((SECONDS < deadline)) || fail "no curl line from the demo within 400 s"
    sleep 1
    CURL_LINE="$(podman logs "$CONTAINER" 2>/dev/null | grep -E '^ +curl ' | head -n 1 | sed 's/^ *//' || true)"
done
log "the demo printed: $CURL_LINE ($((SECONDS - START)) s)"

README_VERSION="$(grep -oE 'curl http://127\.0\.0\.1:8080/[0-9]{4}-[0-9]{2}/' "$REPO/README.md" | head -n 1)"
[[ -n $README_VERSION && $CURL_LINE == *"/${README_VERSION##*:8080/}"* ]] ||
    fail "the demo's curl line ($CURL_LINE) is not the README's (${README_VERSION:-none found})"

# Run as printed; curl's own options after it only record what came back.
STATUS="$(podman exec "$CONTAINER" bash -c "$CURL_LINE -sS -o /tmp/body -w '%{http_code}'")" ||
    fail "the curl line failed: $STATUS"
BODY="$(podman exec "$CONTAINER" cat /tmp/body)"
[[ $STATUS == 200 ]] || fail "the curl line answered $STATUS: ${BODY:0:500}"
[[ $BODY == *'Demo advertiser'* ]] || fail "the curl line's answer lacks the fake's advertiser: ${BODY:0:500}"
log "curl line -> 200, ${#BODY} bytes"

CONSOLE="$(podman logs "$CONTAINER" 2>/dev/null | grep -oE 'http://[^ ]+/_proxy/$' | head -n 1 || true)"
[[ -n $CONSOLE ]] || fail "the demo printed no console address"
CONSOLE_STATUS="$(podman exec "$CONTAINER" curl -sS -o /dev/null -w '%{http_code}' "$CONSOLE")"
[[ $CONSOLE_STATUS == 200 ]] || fail "the console at $CONSOLE answered $CONSOLE_STATUS"
log "console $CONSOLE -> 200"

log "FIRST RUN PASSED in $((SECONDS - START)) s"
