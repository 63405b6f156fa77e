# shellcheck shell=bash
# The engine lab, sourced by .ci/swarm-setup and .ci/swarm-nodes: Docker
# engines of the versions people run, each in network, mount and UTS
# namespaces of its own (.ci/engine-exec), so that engines share nothing with
# each other or with this machine: their bridges, firewall rules and mounts
# vanish with them, and nothing they send can leave the machine. An engine
# called NAME keeps its data, socket and log in $SWARMDNS_SWARM_STATE/NAME/.
#
# Nothing is pulled: the image is imported from this machine's /bin/busybox,
# dockerd runs with DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1, and --dns names the
# engine's own address, where the conformance driver runs the lab's upstream
# resolver (tests/conformance/upstream.py). Every dockerd started is appended
# to $SWARMDNS_SWARM_STATE/started (process id and network namespace), which
# .ci/swarm-teardown stops.

lab=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
state=${SWARMDNS_SWARM_STATE:-/tmp/swarmdns-swarm}
cache=/var/cache/swarmdns-engines
image=swarmdns-busybox:1
docker=/usr/bin/docker # Debian 12's CLI (API 1.41), which every engine here serves
# Where each version comes from; 20.10 is this machine's own Debian 12 package.
declare -A suites=([20.10]=bookworm [26.1]=trixie [28.5]=sid)
mkdir -p "$state"

say() { echo "$(basename "$0"): $*"; }

# The CLI, on the engine called $1.
cli() {
    DOCKER_HOST="unix://$state/$1/docker.sock" "$docker" "${@:2}"
}

# This machine's packages the lab needs, installed when missing.
install_packages() {
    local packages=()
    [ -x /usr/sbin/dockerd ] && [ -x "$docker" ] || packages+=(docker.io)
    [ -x /usr/sbin/runc ] || packages+=(runc)
    command -v iptables >/dev/null || packages+=(iptables)
    [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1 || packages+=(busybox-static)
    command -v nsenter >/dev/null && command -v unshare >/dev/null || packages+=(util-linux)
    command -v dig >/dev/null || packages+=(bind9-dnsutils)
    command -v ip >/dev/null || packages+=(iproute2)
    if [ ${#packages[@]} -gt 0 ]; then
        say "installing ${packages[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
    fi
}

# The machine's firewall before the first engine starts: .ci/swarm-teardown
# checks that the engines (in namespaces of their own) left it as it was.
snapshot_firewall() {
    local tool
    for tool in iptables ip6tables; do
        [ -e "$state/$tool.rules" ] || "$tool-save" >"$state/$tool.rules"
    done
}

# Unpacks packages $3... of suite $1 into folder $2 (docker.io and containerd
# into $cache/SUITE, docker-compose into $cache/SUITE-compose). apt works from a
# source list, package lists and cache of its own in a temporary folder, so the
# system's apt configuration and state stay as they were.
fetch() (
    local suite=$1 destination=$2 packages=("${@:3}") tmp release mirror
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    # The mirror this machine's own Debian release comes from.
    # shellcheck source=/dev/null
    release=$(. /etc/os-release && echo "$VERSION_CODENAME")
    # shellcheck disable=SC2016 # $(REPO_URI) is apt's field, not the shell's
    mirror=$(apt-get indextargets --format '$(REPO_URI)' "Release: $release" 'Target-Of: deb' |
        awk 'NR == 1')
    [ -n "$mirror" ] || { say "no Debian mirror in /etc/apt/sources.list(.d)"; exit 1; }
    echo "deb $mirror $suite main" >"$tmp/sources.list"
    mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial" "$tmp/debs"
    # apt downloads as its _apt user
    chmod 755 "$tmp"
    chown -R _apt "$tmp/lists" "$tmp/cache" "$tmp/debs"
    local options=(
        -o "Dir::Etc::SourceList=$tmp/sources.list" -o Dir::Etc::SourceParts=/dev/null
        -o "Dir::State::Lists=$tmp/lists" -o "Dir::Cache=$tmp/cache"
    )
    say "fetching ${packages[*]} of $suite into $destination"
    apt-get -qq "${options[@]}" update
    (cd "$tmp/debs" && apt-get -qq "${options[@]}" download "${packages[@]}")
    mkdir -p "$tmp/root"
    for deb in "$tmp"/debs/*.deb; do dpkg-deb -x "$deb" "$tmp/root"; done
    mkdir -p "$(dirname "$destination")"
    mv "$tmp/root" "$destination" # whole or absent: a failed fetch leaves nothing
)

# Prints the folder that holds version $1's /usr (empty for this machine's
# own), fetching it first when needed.
engine_root() {
    local version=$1 suite=${suites[$1]:-} root found
    [ -n "$suite" ] || { say "no engine $version (${!suites[*]})" >&2; return 1; }
    if [ "$suite" != bookworm ]; then
        root=$cache/$suite
        [ -d "$root" ] || fetch "$suite" "$root" docker.io containerd >&2
    fi
    # A suite moves on: say so rather than test another version under this name.
    found=$("${root:-}/usr/sbin/dockerd" --version)
    if [[ $found != *"version $version."* ]]; then
        say "$suite's dockerd is not $version: $found" >&2
        return 1
    fi
    echo "${root:-}"
}

# Prints the path of Debian's Compose v2 (the docker-compose CLI plugin, which
# also runs standalone with DOCKER_HOST set) of the suite engine $1 comes from,
# fetching it first when needed. 20.10 gets none: bookworm packages only the
# old Python docker-compose 1.x.
compose_binary() {
    local version=$1 suite=${suites[$1]:-} root binary
    if [ -z "$suite" ] || [ "$suite" = bookworm ]; then
        say "no Compose v2 for engine $version (only for 26.1 and 28.5)" >&2
        return 1
    fi
    root=$cache/$suite-compose
    binary=$root/usr/libexec/docker/cli-plugins/docker-compose
    [ -d "$root" ] || fetch "$suite" "$root" docker-compose >&2
    [ -x "$binary" ] || { say "no $binary in $suite's docker-compose" >&2; return 1; }
    echo "$binary"
}

# Starts engine $2 called $1 at address $3 (in a namespace of its own; with
# --hub NETNS after them, linked to the bridge there), unless it answers.
start_engine() {
    local name=$1 version=$2 address=$3 link=("${@:4}")
    local dir=$state/$1 root tool
    cli "$name" info >/dev/null 2>&1 && return 0
    root=$(engine_root "$version")
    # First on dockerd's PATH: its own containerd and shims, and Debian 12's
    # runc (newer suites' runc needs a newer glibc than Debian 12's).
    mkdir -p "$dir/bin"
    for tool in "$root"/usr/sbin/dockerd "$root"/usr/sbin/docker-proxy \
        "$root"/usr/bin/containerd "$root"/usr/bin/containerd-shim*; do
        ln -sfn "$tool" "$dir/bin/"
    done
    ln -sfn /usr/sbin/runc "$dir/bin/runc"
    echo '{}' >"$dir/daemon.json" # no /etc/docker/daemon.json of this machine's
    # A fresh engine: nothing an earlier run left (services after a crash, say)
    # can leak into this one.
    rm -rf "$dir/data"
    say "starting dockerd $version as $name (log: $dir/dockerd.log)"
    # The exec root is on the engine's private tmpfs: fresh on every start.
    setsid unshare --net --mount --uts -- \
        "$lab/engine-exec" "${link[@]}" "$name" "$address" "$dir/bin" \
        --data-root "$dir/data" --exec-root /run/docker/engine \
        --pidfile "$dir/dockerd.pid" -H "unix://$dir/docker.sock" \
        --config-file "$dir/daemon.json" --dns "$address" \
        >"$dir/dockerd.log" 2>&1 </dev/null &
    local launched=$! waited=0 pid
    until cli "$name" info >/dev/null 2>&1; do
        if ! kill -0 "$launched" 2>/dev/null || [ $((waited += 1)) -gt 300 ]; then
            say "dockerd $name did not start; the end of its log:"
            tail -20 "$dir/dockerd.log"
            kill "$launched" 2>/dev/null || true
            return 1
        fi
        sleep 0.2
    done
    pid=$(cat "$dir/dockerd.pid")
    echo "$pid $(readlink "/proc/$pid/ns/net")" >>"$state/started"
}

# Makes the gateway bridge of every task on engine $1, before swarm init or
# join would make one called docker_gwbridge: named for this engine.
make_gateway_bridge() {
    cli "$1" network inspect docker_gwbridge >/dev/null 2>&1 && return 0
    cli "$1" network create --driver bridge \
        --opt com.docker.network.bridge.name="gw-$1" \
        --opt com.docker.network.bridge.enable_icc=false \
        --opt com.docker.network.bridge.enable_ip_masquerade=true \
        docker_gwbridge >/dev/null
}

# Whether engine $1 is in a swarm.
in_swarm() {
    [ "$(cli "$1" info --format '{{.Swarm.LocalNodeState}}')" = active ]
}

# Imports the image into engine $1, from this machine's /bin/busybox.
import_image() {
    cli "$1" image inspect "$image" >/dev/null 2>&1 && return 0
    say "importing $image into $1 from /bin/busybox"
    local rootfs tool
    rootfs=$(mktemp -d)
    mkdir -p "$rootfs/bin" "$rootfs/tmp"
    cp /bin/busybox "$rootfs/bin/busybox"
    for tool in sh sleep test touch; do ln -s busybox "$rootfs/bin/$tool"; done
    tar -C "$rootfs" -c . | cli "$1" import - "$image" >/dev/null
    rm -rf "$rootfs"
}
