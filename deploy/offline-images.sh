#!/usr/bin/env bash
# Builds every image of deploy/docker-compose.yml without an image registry: the bases from Debian packages
# (mmdebstrap, from the Debian mirror apt uses), the node image from a signal-node built on this machine.
#
#   deploy/offline-images.sh                 # then:
#   eval "$(deploy/offline-images.sh --env)" # the SIGNAL_*_IMAGE variables that select these images
#   docker-compose -f deploy/docker-compose.yml up -d --no-build
#
# Images (tags are settings, see below):
#   signal-offline/bookworm-slim  Debian bookworm, minbase without docs/man/locales (as debian:bookworm-slim),
#                                 plus the node's runtime packages (libhiredis0.14, curl, ca-certificates):
#                                 the Dockerfile's RUNTIME_IMAGE, so that its build needs no network
#   signal-offline/redis          Debian's redis-server, as the official redis image is used by the compose file:
#                                 `redis-server` and `redis-cli` on PATH, user redis, WORKDIR and VOLUME /data,
#                                 port 6379, protected mode off (the official image's default)
#   signal-offline/haproxy        Debian's haproxy, as the official image: config at
#                                 /usr/local/etc/haproxy/haproxy.cfg, `haproxy -W -db`, user haproxy, SIGUSR1
#   signal-node:local             deploy/Dockerfile, target `prebuilt`: the runtime stage + a release signal-node
#                                 built here with --static-swift-stdlib, and its resource bundle
#
# Why a binary built on the host and not the `build` stage in a Swift image made from /opt/swift: that image
# would be ~3 GB, its build would fetch the Swift packages from GitHub (no network in here, and none for an
# air-gapped operator), and it would compile everything from scratch at every change on a cold cache, while the
# host's .build/release is incremental. The binary is what the `build` stage makes (same command).
#
# Idempotent: an image whose recipe (this script, the package list, the binary's and Dockerfile's hashes) has not
# changed is kept; a run with everything in place takes a second or two plus the incremental `swift build`.
# The .deb files are cached (SIGNAL_OFFLINE_CACHE) so that the three bases download each package once.
#
# Environment:
#   SIGNAL_NODE_BIN         a prebuilt release signal-node (its signal_Node.resources next to it); default: build
#                           it with `swift build -c release --product signal-node --static-swift-stdlib`
#   SIGNAL_DEBIAN_MIRROR    default http://deb.debian.org/debian (a local mirror for air-gapped networks)
#   SIGNAL_OFFLINE_CACHE    .deb cache, default ${XDG_CACHE_HOME:-~/.cache}/signal-offline
#   SIGNAL_RUNTIME_BASE, SIGNAL_REDIS_IMAGE, SIGNAL_HAPROXY_IMAGE, SIGNAL_NODE_IMAGE: the tags
#   SIGNAL_OFFLINE_REFRESH=1  rebuild every image (e.g. for Debian's security updates)
# Options: --env (print the variables only, build nothing), --skip-node (the bases only), -h.
#
# Needs root (mmdebstrap, docker); installs mmdebstrap and docker.io with apt when missing, and starts dockerd
# when no Docker engine answers (log: $SIGNAL_OFFLINE_CACHE/dockerd.log).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"

RUNTIME_BASE="${SIGNAL_RUNTIME_BASE:-signal-offline/bookworm-slim:latest}"
REDIS_IMAGE="${SIGNAL_REDIS_IMAGE:-signal-offline/redis:bookworm}"
HAPROXY_IMAGE="${SIGNAL_HAPROXY_IMAGE:-signal-offline/haproxy:bookworm}"
NODE_IMAGE="${SIGNAL_NODE_IMAGE:-signal-node:local}"
MIRROR="${SIGNAL_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
CACHE="${SIGNAL_OFFLINE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/signal-offline}"
SUITE=bookworm
RUNTIME_PACKAGES="libhiredis0.14,libstdc++6,curl,ca-certificates"
LABEL=org.signal.offline.recipe

print_env() {
    echo "export SIGNAL_NODE_IMAGE='$NODE_IMAGE' SIGNAL_REDIS_IMAGE='$REDIS_IMAGE' SIGNAL_HAPROXY_IMAGE='$HAPROXY_IMAGE'"
}

skip_node=0
case "${1:-}" in
    --env) print_env; exit 0 ;;
    --skip-node) skip_node=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    "") ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
esac

log() { echo "== $*" >&2; }
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "needs root (or sudo) for mmdebstrap and docker" >&2; exit 2; }
    SUDO=sudo
fi

# ---- tools ---------------------------------------------------------------------------------------------------
missing=()
command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
command -v dockerd >/dev/null || [ -x /usr/sbin/dockerd ] || missing+=(docker.io)
command -v eatmydata >/dev/null || missing+=(eatmydata)  # unpacking without fsync: 30 s a base instead of 3 min
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
mkdir -p "$CACHE/debs"

if ! $SUDO docker info >/dev/null 2>&1; then
    log "starting dockerd (log: $CACHE/dockerd.log)"
    dockerd_bin="$(command -v dockerd || echo /usr/sbin/dockerd)"
    # setsid: dockerd outlives this script (containers run on it); it is stopped like any service.
    $SUDO setsid "$dockerd_bin" >>"$CACHE/dockerd.log" 2>&1 </dev/null &
    for _ in $(seq 1 120); do
        $SUDO docker info >/dev/null 2>&1 && break
        sleep 0.5
    done
    $SUDO docker info >/dev/null 2>&1 || { echo "dockerd did not come up; see $CACHE/dockerd.log" >&2; exit 2; }
fi
# No buildx on Debian bookworm: the legacy builder (quiet about its deprecation).
if ! docker buildx version >/dev/null 2>&1; then export DOCKER_BUILDKIT=0; fi

recipe_of() { docker image inspect -f "{{ index .Config.Labels \"$LABEL\" }}" "$1" 2>/dev/null || true; }
is_current() { [ "${SIGNAL_OFFLINE_REFRESH:-0}" != 1 ] && [ "$(recipe_of "$1")" = "$2" ]; }

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
SELF_HASH="$(sha256sum "$0" | cut -c1-16)"

# ---- bases from Debian packages --------------------------------------------------------------------------------
# build_base TAG PACKAGES HOOK_SCRIPT DOCKER_CHANGES...: mmdebstrap minbase + PACKAGES, then HOOK_SCRIPT run with the
# root directory as $1, then `docker import` with the Dockerfile instructions DOCKER_CHANGES.
build_base() {
    local tag="$1" packages="$2" hook="$3"; shift 3
    local recipe
    recipe="$(printf '%s\n' "$SELF_HASH" "$SUITE" "$MIRROR" "$packages" "$hook" "$@" | sha256sum | cut -c1-16)"
    if is_current "$tag" "$recipe"; then
        log "$tag: up to date"
        return
    fi
    log "$tag: mmdebstrap $SUITE minbase + $packages"
    local started=$SECONDS
    printf '%s\n' "$hook" >"$WORK/hook.sh"
    # No fsync while unpacking (a throw-away root directory): eatmydata when the host has it, dpkg's unsafe-io.
    local speed=()
    if command -v eatmydata >/dev/null && [ -d /usr/share/mmdebstrap/hooks/eatmydata ]; then
        speed=(--hook-dir=/usr/share/mmdebstrap/hooks/eatmydata)
    fi
    # As debian:bookworm-slim: no documentation, manuals or translations; no apt lists or caches in the image.
    $SUDO mmdebstrap --variant=minbase --include="$packages" --quiet --skip=essential/unlink \
        --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr "${speed[@]}" --dpkgopt=force-unsafe-io \
        --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
        --dpkgopt='path-exclude=/usr/share/lintian/*' \
        --setup-hook="mkdir -p \"\$1/var/cache/apt/archives\"" \
        --setup-hook="sync-in '$CACHE/debs' /var/cache/apt/archives" \
        --customize-hook="sync-out /var/cache/apt/archives '$CACHE/debs'" \
        --customize-hook="sh '$WORK/hook.sh' \"\$1\"" \
        --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/var/log/*.log "$1"/var/log/apt/*' \
        "$SUITE" "$WORK/rootfs.tar" "$MIRROR"
    local args=(--change "LABEL $LABEL=$recipe" --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin')
    local later=()  # instructions `docker import` does not take (STOPSIGNAL): a one-line build on top
    for change in "$@"; do
        case "$change" in
            STOPSIGNAL*) later+=("$change") ;;
            *) args+=(--change "$change") ;;
        esac
    done
    $SUDO docker import "${args[@]}" "$WORK/rootfs.tar" "$tag" >/dev/null
    if [ ${#later[@]} -gt 0 ]; then
        { echo "FROM $tag"; printf '%s\n' "${later[@]}"; } | $SUDO docker build -q -t "$tag" - >/dev/null
    fi
    rm -f "$WORK/rootfs.tar"
    log "$tag: built in $((SECONDS - started)) s"
}

build_base "$RUNTIME_BASE" "$RUNTIME_PACKAGES" ':' 'CMD ["bash"]'

# The official image's entry point passes the arguments to redis-server; it also disables protected mode (no
# password, listening on every interface of the container: the other containers must reach it).
build_base "$REDIS_IMAGE" "redis-server" "$(cat <<'HOOK'
set -eu
root="$1"
mkdir -p "$root/data" && chroot "$root" chown redis:redis /data
cat >"$root/usr/local/bin/docker-entrypoint.sh" <<'EOF'
#!/bin/sh
set -e
# `docker run IMAGE --port 6380`: the options are redis-server's
if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then set -- redis-server "$@"; fi
if [ "$1" = redis-server ]; then
    case " $* " in *" --protected-mode "*) ;; *) set -- "$@" --protected-mode no ;; esac
fi
exec "$@"
EOF
chmod 0755 "$root/usr/local/bin/docker-entrypoint.sh"
HOOK
)" 'USER redis' 'WORKDIR /data' 'VOLUME /data' 'EXPOSE 6379' \
    'ENTRYPOINT ["docker-entrypoint.sh"]' 'CMD ["redis-server"]'

build_base "$HAPROXY_IMAGE" "haproxy" "$(cat <<'HOOK'
set -eu
root="$1"
mkdir -p "$root/usr/local/etc/haproxy"
cat >"$root/usr/local/bin/docker-entrypoint.sh" <<'EOF'
#!/bin/sh
set -e
# as the official image: `docker run IMAGE -f cfg` runs haproxy; haproxy in master-worker mode, in the foreground
if [ "${1#-}" != "$1" ]; then set -- haproxy "$@"; fi
if [ "$1" = haproxy ]; then shift; set -- haproxy -W -db "$@"; fi
exec "$@"
EOF
chmod 0755 "$root/usr/local/bin/docker-entrypoint.sh"
HOOK
)" 'USER haproxy' 'WORKDIR /var/lib/haproxy' 'STOPSIGNAL SIGUSR1' 'EXPOSE 4000' \
    'ENTRYPOINT ["docker-entrypoint.sh"]' 'CMD ["haproxy", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]'

# ---- the node image --------------------------------------------------------------------------------------------
if [ "$skip_node" = 0 ]; then
    if [ -n "${SIGNAL_NODE_BIN:-}" ]; then
        bin="$SIGNAL_NODE_BIN"
    else
        log "swift build -c release --product signal-node --static-swift-stdlib"
        swift build -c release --product signal-node --static-swift-stdlib 2>&1 \
            | { grep -vE '^\[[0-9]+/[0-9]+\]|prohibited flag' || true; }
        bin="$(swift build -c release --show-bin-path)/signal-node"
    fi
    [ -x "$bin" ] || { echo "no signal-node at $bin" >&2; exit 2; }
    bindir="$(dirname "$bin")"
    ctx="$WORK/context"
    mkdir -p "$ctx/deploy/prebuilt"
    cp "$REPO/deploy/Dockerfile" "$ctx/Dockerfile"
    cp "$bin" "$ctx/deploy/prebuilt/signal-node"
    # As the `build` stage: without the symbol table and debug information (121 MB -> 72 MB)
    strip --strip-unneeded "$ctx/deploy/prebuilt/signal-node"
    found=0
    for bundle in "$bindir"/*.resources; do
        [ -e "$bundle" ] || continue
        cp -RL "$bundle" "$ctx/deploy/prebuilt/"
        found=1
    done
    [ "$found" = 1 ] || { echo "no *.resources bundle next to $bin (the demo page)" >&2; exit 2; }
    if ldd "$ctx/deploy/prebuilt/signal-node" | grep -q 'libswift'; then
        echo "$bin links the Swift runtime dynamically: build it with --static-swift-stdlib" >&2
        exit 2
    fi
    base_id="$(docker image inspect -f '{{.Id}}' "$RUNTIME_BASE")"
    recipe="$( (cd "$ctx" && find . -type f -print0 | sort -z | xargs -0 sha256sum; echo "$base_id") \
        | sha256sum | cut -c1-16)"
    if is_current "$NODE_IMAGE" "$recipe"; then
        log "$NODE_IMAGE: up to date"
    else
        log "$NODE_IMAGE: deploy/Dockerfile --target prebuilt, runtime $RUNTIME_BASE"
        $SUDO docker build -q -f "$ctx/Dockerfile" --target prebuilt --build-arg "RUNTIME_IMAGE=$RUNTIME_BASE" \
            --label "$LABEL=$recipe" -t "$NODE_IMAGE" "$ctx" >"$WORK/build.log" 2>&1 \
            || { cat "$WORK/build.log" >&2; exit 1; }
    fi
fi

for image in "$RUNTIME_BASE" "$REDIS_IMAGE" "$HAPROXY_IMAGE" "$NODE_IMAGE"; do
    size="$(docker image inspect -f '{{.Size}}' "$image" 2>/dev/null || true)"
    [ -n "$size" ] && log "$(awk -v i="$image" -v s="$size" 'BEGIN { printf "%-40s %6.1f MB", i, s / 1e6 }')"
done
log "done in $SECONDS s"
print_env
