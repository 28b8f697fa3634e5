# Shared by the container tests (smoke.sh, first_run.sh); sourced, not run.
#
# No container registry is reachable on these machines: the base image is made
# locally (debootstrap + podman import) once and cached as $BASE_IMAGE, a plain
# Debian with python3, its venv module, pip, CA certificates and curl: what a
# fresh Debian machine has, and what the image's Dockerfile needs.
# Needs root (apt-get, debootstrap, chroot) and $WORK, a scratch directory.

BASE_IMAGE=localhost/criteo-proxy-base:bookworm
SUITE=bookworm
BASE_PACKAGES="python3 python3-venv python3-pip ca-certificates curl"

log() { printf '==> %s\n' "$*"; }
fail() {
    printf '%s FAILED: %s\n' "${TEST_NAME:-TEST}" "$*" >&2
    exit 1
}

# podman, runc and debootstrap from Debian's packages, and a containers.conf that works
# here (crun and podman's default ulimits fail on these machines: runc, explicit limits).
prepare_podman() {
    [[ $(id -u) -eq 0 ]] || fail "run as root (apt-get, debootstrap and chroot need it)"
    local missing=() pkg
    for pkg in podman runc debootstrap uidmap slirp4netns curl; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' ||
            missing+=("$pkg")
    done
    if ((${#missing[@]})); then
        log "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >/dev/null
    fi
    cat >"$WORK/containers.conf" <<'CONF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=20000:20000"]

[engine]
runtime = "runc"
CONF
    export CONTAINERS_CONF="$WORK/containers.conf"
}

# The base image, made once and cached; made again when an older one lacks a package.
ensure_base_image() {
    if podman image exists "$BASE_IMAGE" &&
        podman run --rm --network none "$BASE_IMAGE" sh -c 'command -v curl' >/dev/null 2>&1; then
        log "base image $BASE_IMAGE cached"
        return
    fi
    local started=$SECONDS mirror rootfs="$WORK/rootfs"
    # Only the package registries are reachable: use the Debian mirror apt uses.
    mirror="$(
        { grep -rhoE '^URIs:[[:space:]]*[^[:space:]]+' /etc/apt/sources.list.d/*.sources 2>/dev/null |
            awk '{print $2}'
          grep -rhoE '^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?[^[:space:]]+' \
            /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk '{print $NF}'
        } | grep -E '/debian/?$' | head -n 1 || true
    )"
    mirror="${mirror:-http://deb.debian.org/debian}"
    log "building base image from $mirror ($SUITE, minbase)"
    BASE_ROOTFS="$rootfs"  # for the caller's cleanup, should this fail half-way
    debootstrap --variant=minbase "$SUITE" "$rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1 ||
        { tail -n 20 "$WORK/debootstrap.log" >&2; fail "debootstrap failed"; }

    # The registries are reached through an intercepting gateway: its CA goes
    # into the base image's system bundle, and pip (which otherwise trusts
    # only its own certifi bundle) is pointed at that bundle, as on the host.
    mkdir -p "$rootfs/usr/local/share/ca-certificates"
    if compgen -G '/usr/local/share/ca-certificates/*' >/dev/null; then
        cp -a /usr/local/share/ca-certificates/. "$rootfs/usr/local/share/ca-certificates/"
    fi
    [[ -f /etc/pip.conf ]] && cp /etc/pip.conf "$rootfs/etc/pip.conf"
    if [[ -d /etc/xdg/pip ]]; then
        mkdir -p "$rootfs/etc/xdg"
        cp -a /etc/xdg/pip "$rootfs/etc/xdg/"
    fi
    cp -L /etc/resolv.conf "$rootfs/etc/resolv.conf"
    mount -t proc proc "$rootfs/proc"
    chroot "$rootfs" /bin/sh -ec "
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends $BASE_PACKAGES >/dev/null
        update-ca-certificates >/dev/null
        apt-get clean
        rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
    " >"$WORK/chroot.log" 2>&1 || { tail -n 20 "$WORK/chroot.log" >&2; fail "installing $BASE_PACKAGES in the base failed"; }
    umount "$rootfs/proc"
    rm -f "$rootfs/etc/resolv.conf"
    podman rmi -f "$BASE_IMAGE" >/dev/null 2>&1 || true
    tar -C "$rootfs" -c . | podman import - "$BASE_IMAGE" >/dev/null 2>"$WORK/import.log" ||
        { cat "$WORK/import.log" >&2; fail "podman import of the base image failed"; }
    rm -rf "$rootfs"
    BASE_ROOTFS=""
    log "base image $BASE_IMAGE made ($((SECONDS - started)) s)"
}

# Unmount what ensure_base_image may have left mounted (call from an EXIT trap).
cleanup_base_rootfs() {
    if [[ -n ${BASE_ROOTFS:-} ]]; then
        umount "$BASE_ROOTFS/proc" 2>/dev/null || true
    fi
}
