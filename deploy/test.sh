#!/usr/bin/env bash
# Builds and runs deploy/ for real with podman: the image against a Redis, then compose.yaml and
# compose.cluster.yaml, each counting a small workload exactly through the API and coming down
# cleanly. Installs what it needs on Debian as root (podman, runc, mmdebstrap; podman-compose from
# PyPI in a venv). No container registry is needed: the base images are stand-ins built from
# Debian's packages and cached in podman's store. See deploy/README.md.
#
# Environment: JOBPULSE_DEPLOY_WORK (cache and scratch, default /var/tmp/jobpulse-deploy),
# JOBPULSE_DEPLOY_KEEP=1 (leave the containers of a failed step up for a look).
set -euo pipefail

DEPLOY=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$DEPLOY")
WORK=${JOBPULSE_DEPLOY_WORK:-/var/tmp/jobpulse-deploy}
RUN="jpdeploy$$"                         # prefix of every container, network, volume and image of this run
PY_STANDIN=localhost/jobpulse-standin-python:3.11
REDIS_STANDIN=localhost/jobpulse-standin-redis:7
IMAGE=localhost/jobpulse-deploy-test:latest
PODMAN_COMPOSE_VERSION=1.6.0
SUITE=bookworm
MIRROR=http://deb.debian.org/debian
LOGS=$WORK/logs/$RUN                     # podman-compose's output; kept only when a step fails
STARTED_S=$SECONDS
PASSED=0

say() { echo "deploy test [$((SECONDS - STARTED_S)) s]: $*"; }
die() { echo "deploy test: FAILED: $*" >&2; exit 1; }

# -- tools -----------------------------------------------------------------------------------

install_tools() {
  local missing=()
  command -v podman >/dev/null || missing+=(podman)
  command -v runc >/dev/null || missing+=(runc)
  command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
  command -v iptables >/dev/null || missing+=(iptables)
  dpkg -s netavark aardvark-dns >/dev/null 2>&1 || missing+=(netavark aardvark-dns)
  [ ${#missing[@]} -eq 0 ] && return
  say "installing ${missing[*]} from Debian's packages"
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    die "podman is not available and cannot be installed here (needs root and apt-get): ${missing[*]}"
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" ca-certificates uidmap >/dev/null \
    || die "podman is not available and could not be installed: apt-get install ${missing[*]} failed"
  command -v podman >/dev/null || die "podman is not available after installing it"
}

configure_podman() {
  mkdir -p "$WORK" "$LOGS"
  # Podman's default ulimits (nofile/nproc 1048576) are refused on these machines, and crun refuses
  # their hybrid cgroup layout: runc and lower limits, for this script's podman only.
  cat >"$WORK/containers.conf" <<'CONF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
log_driver = "k8s-file"

[engine]
runtime = "runc"
events_logger = "file"
CONF
  export CONTAINERS_CONF="$WORK/containers.conf"
  podman info >/dev/null 2>&1 || { podman info >&2 || true; die "podman does not work here"; }
  if [[ "$("$WORK/venv/bin/podman-compose" --version 2>/dev/null)" != *"podman-compose version $PODMAN_COMPOSE_VERSION"* ]]; then
    say "installing podman-compose $PODMAN_COMPOSE_VERSION from PyPI in $WORK/venv"
    python3 -m venv "$WORK/venv"
    "$WORK/venv/bin/pip" install -q "podman-compose==$PODMAN_COMPOSE_VERSION" 2>&1 | grep -v "^WARNING: Location" || true
  fi
  "$WORK/venv/bin/podman-compose" --version >/dev/null || die "podman-compose did not install"
}

# -- stand-in base images --------------------------------------------------------------------

# standin IMAGE PACKAGES HOOK CHANGES...: a Debian root file system with PACKAGES, HOOK run on it
# (as mmdebstrap's customize hook, "$1" = the root), imported as IMAGE with the image CHANGES.
# Cached: rebuilt only when this recipe (or the host's CA bundle) changes.
standin() {
  local image=$1 packages=$2 hook=$3; shift 3
  local recipe
  recipe=$( { echo "$SUITE $MIRROR $packages $hook $*"; cat /etc/ssl/certs/ca-certificates.crt; } | sha256sum | cut -c1-16)
  if [ "$(podman image inspect --format '{{ index .Labels "jobpulse.recipe" }}' "$image" 2>/dev/null)" = "$recipe" ]; then
    say "stand-in $image is cached"
    return
  fi
  say "building stand-in $image from Debian's packages ($packages)"
  local tar="$WORK/standin-$RUN-${image//[:\/]/-}.tar" changes=() c
  for c in "$@" "LABEL jobpulse.recipe=$recipe"; do changes+=(--change "$c"); done
  mmdebstrap --quiet --variant=minbase --include="$packages" \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --customize-hook="$hook" --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
    "$SUITE" "$tar" "$MIRROR" || { rm -f "$tar"; die "mmdebstrap failed for $image"; }
  podman import --quiet "${changes[@]}" "$tar" "$image" >/dev/null || { rm -f "$tar"; die "podman import failed for $image"; }
  rm -f "$tar"
}

build_standins() {  # both at once: mostly package downloads
  local python redis
  python_standin & python=$!
  redis_standin & redis=$!
  wait "$python" || die "the python stand-in did not build"
  wait "$redis" || die "the redis stand-in did not build"
}

STANDIN_PATH=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

python_standin() {
  # python:3.11-slim's shape: python and pip on PATH, pip installing for the whole image (no
  # "externally managed" refusal), and the host's CA bundle, which pip needs behind this network.
  standin "$PY_STANDIN" python3,python3-venv,python3-pip,ca-certificates '
    ln -s /usr/bin/python3 "$1/usr/local/bin/python"; ln -s /usr/bin/pip3 "$1/usr/local/bin/pip"
    rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED
    cp /etc/ssl/certs/ca-certificates.crt "$1/etc/ssl/certs/ca-certificates.crt"' \
    "ENV $STANDIN_PATH" "ENV LANG=C.UTF-8" 'CMD ["python3"]'
}

redis_standin() {
  # redis:7's shape: redis-server and redis-cli, /data as the working directory, and protected mode
  # off for a bare `redis-server ...` (the official image compiles it off; here its entrypoint adds it).
  standin "$REDIS_STANDIN" redis-server,redis-tools '
    mkdir -p "$1/data"
    printf "%s\n" "#!/bin/sh" "set -e" "case \"\$1\" in -*) set -- redis-server \"\$@\";; esac" \
      "if [ \"\$1\" = redis-server ]; then shift; set -- redis-server --protected-mode no \"\$@\"; fi" \
      "exec \"\$@\"" >"$1/usr/local/bin/docker-entrypoint.sh"
    chmod 755 "$1/usr/local/bin/docker-entrypoint.sh"' \
    "ENV $STANDIN_PATH" "WORKDIR /data" 'ENTRYPOINT ["docker-entrypoint.sh"]' 'CMD ["redis-server"]'
}

# -- helpers ---------------------------------------------------------------------------------

free_port() {  # a free TCP port on loopback in 30000-39999 (not 6379 nor anyone's listener)
  local port
  for _ in $(seq 200); do
    port=$((30000 + RANDOM % 10000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$port"; return; fi
  done
  die "no free port found"
}

api_key() {  # a fresh API key and its digest, as `jobpulse new-api-key` makes them
  local out
  out=$(podman run --rm "$IMAGE" jobpulse new-api-key | awk -F': *' '/API key/ {k=$2} /digest/ {d=$2} END {print k, d}')
  [ "$(wc -w <<<"$out")" = 2 ] || die "jobpulse new-api-key printed no key"
  echo "$out"
}

remove_images() {  # remove_images PROJECT: untag what compose built (the layers stay cached)
  podman images --format '{{.Repository}}:{{.Tag}}' | grep "/${1}_" | xargs -r podman rmi >/dev/null 2>&1 || true
}

# workload NETWORK REDIS_URL P: the smoke workload sent from a one-off container in NETWORK
workload() {
  podman run --rm --network "$1" -e JOBPULSE_REDIS_URL="$2" -e JOBPULSE_PARTITIONS="$3" \
    -v "$DEPLOY/smoke.py:/smoke.py:ro" "$IMAGE" python /smoke.py send || die "the workload was not sent ($2)"
}

# -- steps -----------------------------------------------------------------------------------

build_image() {
  local before
  before=$(podman image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
  say "building deploy/Dockerfile on $PY_STANDIN"
  podman build -q --build-arg BASE_IMAGE="$PY_STANDIN" -f "$DEPLOY/Dockerfile" -t "$IMAGE" "$REPO" >/dev/null \
    || die "podman build of deploy/Dockerfile failed"
  if [ -n "$before" ] && [ "$before" != "$(podman image inspect --format '{{.Id}}' "$IMAGE")" ]; then
    podman rmi "$before" >/dev/null 2>&1 || true  # the previous build, now untagged
  fi
}

# The image's two roles against a Redis container; the aggregator starts first and waits for Redis.
run_image() {
  local net=$RUN-net port key digest keys
  port=$(free_port)
  keys=$(api_key) || exit 1
  read -r key digest <<<"$keys"
  podman network create "$net" >/dev/null
  CLEANUP+=("podman rm -f -t 5 $RUN-aggregator $RUN-api $RUN-redis >/dev/null 2>&1; podman network rm -f $net >/dev/null 2>&1")
  say "image: aggregator started before its Redis"
  podman run -d --name "$RUN-aggregator" --network "$net" -e JOBPULSE_REDIS_URL="redis://$RUN-redis:6379/0" \
    "$IMAGE" jobpulse aggregate >/dev/null
  wait_log "$RUN-aggregator" "is not ready"
  podman run -d --name "$RUN-redis" --network "$net" "$REDIS_STANDIN" redis-server --appendonly yes >/dev/null
  wait_log "$RUN-aggregator" "aggregator .* on redis://$RUN-redis"
  podman run -d --name "$RUN-api" --network "$net" -p "127.0.0.1:$port:8000" \
    -e JOBPULSE_REDIS_URL="redis://$RUN-redis:6379/0" -e JOBPULSE_API_KEYS="$digest" "$IMAGE" >/dev/null
  workload "$net" "redis://$RUN-redis:6379/0" 4
  python3 "$DEPLOY/smoke.py" check "http://127.0.0.1:$port" "$key" || die "image: wrong counts"
  podman stop -t 30 "$RUN-aggregator" >/dev/null
  [ "$(podman inspect --format '{{.State.ExitCode}}' "$RUN-aggregator")" = 0 ] || die "the aggregator did not exit 0 on SIGTERM"
  logged "$RUN-aggregator" "stopped after" || die "the aggregator did not stop cleanly"
  eval "${CLEANUP[-1]}"; unset 'CLEANUP[-1]'
  say "image: counted exactly, the aggregator stopped cleanly"
}

logged() {  # logged CONTAINER REGEX (the whole log is read first: `podman logs | grep -q` would
  # fail under pipefail when grep stops reading early)
  local log
  log=$(podman logs "$1" 2>&1 || true)
  grep -q -- "$2" <<<"$log"
}

wait_log() {  # wait_log CONTAINER REGEX: up to 90 s
  for _ in $(seq 180); do
    logged "$1" "$2" && return
    sleep 0.5
  done
  podman logs "$1" 2>&1 | tail -20 >&2
  die "$1 never logged /$2/"
}

# compose_test NAME REDIS_URL P FILE...: up, workload, exact counts through the API, down
compose_test() {
  local name=$1 url=$2 partitions=$3 project=$RUN-$1 port bridge_port="" key digest keys f; shift 3
  local compose=("$WORK/venv/bin/podman-compose" -p "$project")
  for f in "$@"; do compose+=(-f "$DEPLOY/$f"); done
  port=$(free_port)
  keys=$(api_key) || exit 1
  read -r key digest <<<"$keys"
  export JOBPULSE_API_KEYS=$digest JOBPULSE_HOST_PORT=$port
  export JOBPULSE_BASE_IMAGE=$PY_STANDIN JOBPULSE_REDIS_IMAGE=$REDIS_STANDIN
  if [[ " $* " == *" compose.hammerwork.yaml "* ]]; then
    bridge_port=$(free_port)
    export JOBPULSE_HAMMERWORK_SECRET=$RUN-secret JOBPULSE_BRIDGE_HOST_PORT=$bridge_port
  fi
  CLEANUP+=("${compose[*]} down -v -t 5 >/dev/null 2>&1; remove_images $project")
  say "$name: podman-compose ${*/#/-f deploy/} up"
  "${compose[@]}" up -d --build >"$LOGS/$project-up.log" 2>&1 || { tail -40 "$LOGS/$project-up.log" >&2; die "$name: up failed"; }
  if [ "$name" = cluster ]; then
    check_cluster "$project"
  fi
  workload "${project}_default" "$url" "$partitions"
  if [ -n "$bridge_port" ]; then
    python3 "$DEPLOY/smoke.py" hammerwork "http://127.0.0.1:$bridge_port" "$JOBPULSE_HAMMERWORK_SECRET" \
      || die "$name: the hammerwork bridge"
  fi
  python3 "$DEPLOY/smoke.py" check "http://127.0.0.1:$port" "$key" ${bridge_port:+hammerwork} \
    || { "${compose[@]}" logs >&2 || true; die "$name: wrong counts"; }
  if [ "$name" = cluster ]; then
    check_cluster_init "$project"
    podman run --rm --network "${project}_default" -e JOBPULSE_REDIS_URL="$url" -e JOBPULSE_PARTITIONS="$partitions" \
      -v "$DEPLOY/smoke.py:/smoke.py:ro" "$IMAGE" python /smoke.py owners 3 \
      || die "cluster: the three aggregators do not share the partitions"
  fi
  # podman-compose 1.6 stops every container at once; Docker Compose stops dependents first. Do
  # that here: the jobpulse services first (each aggregator must exit 0 after releasing its
  # leases), then the rest with `down`.
  say "$name: podman-compose stop (jobpulse services), then down"
  local services=(aggregator api) c
  [ -z "$bridge_port" ] || services+=(hammerwork-bridge)
  "${compose[@]}" stop -t 30 "${services[@]}" >"$LOGS/$project-stop.log" 2>&1 \
    || { tail -40 "$LOGS/$project-stop.log" >&2; die "$name: stop failed"; }
  for c in $(podman ps -a --filter "name=^${project}_aggregator_" --format '{{.Names}}'); do
    [ "$(podman inspect --format '{{.State.ExitCode}}' "$c")" = 0 ] && logged "$c" "stopped after" \
      || { podman logs "$c" 2>&1 | tail -20 >&2; die "$name: $c did not stop cleanly"; }
  done
  "${compose[@]}" down -t 30 >"$LOGS/$project-down.log" 2>&1 || { tail -40 "$LOGS/$project-down.log" >&2; die "$name: down failed"; }
  local left
  left=$(podman ps -a --filter "name=^${project}_" --format '{{.Names}} {{.Status}}')
  [ -z "$left" ] || die "$name: containers left after down: $left"
  podman volume rm -f $(podman volume ls -q --filter "name=^${project}_") >/dev/null 2>&1 || true
  eval "${CLEANUP[-1]}"; unset 'CLEANUP[-1]'
  unset JOBPULSE_HAMMERWORK_SECRET JOBPULSE_BRIDGE_HOST_PORT
  say "$name: counted exactly, came down cleanly"
}

# The one-shot must end with exit code 0. (`redis-cli --cluster create` sometimes waits 30-50 s for
# the nodes' views to agree, long after every node says cluster_state:ok and the aggregators run.)
check_cluster_init() {
  local init=${1}_cluster-init_1
  for _ in $(seq 360); do
    [ "$(podman inspect --format '{{.State.Status}}' "$init")" = exited ] && break
    sleep 0.5
  done
  [ "$(podman inspect --format '{{.State.Status}} {{.State.ExitCode}}' "$init")" = "exited 0" ] \
    || { podman logs "$init" >&2 || true; die "cluster: cluster-init did not finish with exit code 0"; }
}

# Only the bridge requires the hammerwork secret: compose.yaml is read without it, the pair is not.
check_secret_scope() {
  local compose=("$WORK/venv/bin/podman-compose" -p "$RUN-config" -f "$DEPLOY/compose.yaml")
  env -u JOBPULSE_HAMMERWORK_SECRET JOBPULSE_API_KEYS=x "${compose[@]}" config >/dev/null 2>&1 \
    || die "compose.yaml requires more than JOBPULSE_API_KEYS"
  if env -u JOBPULSE_HAMMERWORK_SECRET JOBPULSE_API_KEYS=x "${compose[@]}" -f "$DEPLOY/compose.hammerwork.yaml" \
    config >/dev/null 2>&1; then
    die "compose.hammerwork.yaml starts without JOBPULSE_HAMMERWORK_SECRET"
  fi
  say "the hammerwork secret is required by compose.hammerwork.yaml only"
}

check_cluster() {
  local info masters aggregators n
  for n in 1 2 3; do  # up returns once the containers started; cluster-init may still be joining them
    for _ in $(seq 240); do
      [[ "$(podman exec "${1}_redis-${n}_1" redis-cli cluster info)" == *cluster_state:ok* ]] && break
      sleep 0.5
    done
  done
  info=$(podman exec "${1}_redis-1_1" redis-cli cluster info | tr -d '\r')
  grep -q '^cluster_state:ok' <<<"$info" || die "cluster: not ok: $info"
  masters=$(podman exec "${1}_redis-1_1" redis-cli cluster nodes | grep -c master || true)
  [ "$masters" = 3 ] || die "cluster: $masters masters, not 3"
  aggregators=$(podman ps --filter "name=^${1}_aggregator_" --format '{{.Names}}' | wc -l)
  [ "$aggregators" = 3 ] || die "cluster: $aggregators aggregator containers, not 3"
  grep -q "redis-2" <<<"$(podman exec "${1}_redis-1_1" redis-cli cluster slots)" \
    || die "cluster: the nodes do not announce their host names"
  local c
  for c in "${1}"_aggregator_{1,2,3} "${1}_api_1"; do  # (a missing one inspects as "")
    [ "$(podman inspect --format '{{.State.Status}} {{.RestartCount}}' "$c")" = "running 0" ] \
      || die "cluster: $c is not running from its first start: $(podman inspect --format '{{.State.Status}} restarts={{.RestartCount}}' "$c")"
  done
  say "cluster: 3 masters announcing their host names, 3 aggregators and the API up without a restart"
}

CLEANUP=()
cleanup() {
  local rc=$?
  # the plain closing line CI reads: the steps below, each a test
  echo "deploy: $PASSED passed, $((rc == 0 ? 0 : 1)) failed"
  if [ "$rc" = 0 ]; then rm -rf "$LOGS"; else echo "deploy test: podman-compose output in $LOGS" >&2; fi
  if [ "$rc" != 0 ] && [ "${JOBPULSE_DEPLOY_KEEP:-}" = 1 ]; then
    echo "deploy test: left up for a look (JOBPULSE_DEPLOY_KEEP=1): podman ps -a --filter name=$RUN" >&2
    return
  fi
  local i
  for ((i = ${#CLEANUP[@]} - 1; i >= 0; i--)); do eval "${CLEANUP[i]}" || true; done
}
trap cleanup EXIT

install_tools
configure_podman
build_standins
build_image
# (not `step && PASSED=...`: errexit is off inside a function called that way)
run_image
PASSED=$((PASSED + 1))
check_secret_scope
PASSED=$((PASSED + 1))
compose_test single redis://redis:6379/0 4 compose.yaml compose.hammerwork.yaml
PASSED=$((PASSED + 1))
compose_test cluster redis+cluster://redis-1:6379 16 compose.cluster.yaml
PASSED=$((PASSED + 1))
say "PASSED (image, compose.yaml + compose.hammerwork.yaml, compose.cluster.yaml) in $((SECONDS - STARTED_S)) s"
