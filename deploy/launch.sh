#!/usr/bin/env bash
# gridless cluster launch script: a Ray cluster with the gridless master on its head.
#
#   deploy/launch.sh --local N          head + N worker nodes on this machine (real,
#                                       separate Ray nodes), master on 127.0.0.1
#   deploy/launch.sh head [options]     on the head machine: Ray head + master
#   deploy/launch.sh worker --address HEAD_IP:6379
#                                       on each other machine: join the cluster
#   deploy/launch.sh status             nodes, master, URLs
#   deploy/launch.sh stop               stop the master and every Ray node started here
#
# Then, from any shell on the head:  . ~/.gridless/cluster/cluster.env
#                                    gridless submit examples/digits.yaml --workers 2
#
# Options (head and --local):
#   --ray-port P         Ray's GCS port [6379]
#   --master-port P      the master's HTTP port [8765]
#   --host ADDR          address the master binds [127.0.0.1 with --local, else 0.0.0.0]
#   --ip ADDR            this node's address as others reach it [first of hostname -I]
#   --run-dir DIR        the master's run directory [STATE/run]
#   --advertise-url URL  the master's URL as workers reach it (a proxy, a load balancer)
#                        [http://IP:MASTER_PORT]
#   --store LOCATION     checkpoint store: a folder every node mounts, or s3://bucket/prefix
#                        [RUN_DIR/store; fine for --local, not for several machines]
#   --database-url URL   SQLAlchemy URL, e.g. postgresql+psycopg://user@db/gridless
#                        [SQLite in RUN_DIR]
#   --head-cpus N        CPUs the head offers to workers [0: the head runs the master only]
#   --node-cpus N        CPUs each --local node offers (one worker each) [1]
#   --node-gpus N        GPUs each --local node (or this worker) offers to trials, i.e.
#                        ray start --num-gpus; logical ones on a CPU-only machine [detected]
#   --object-store-mb M  object store of each node started here [200]
#
# State (tokens, logs, pids) lives in $GRIDLESS_CLUSTER_DIR [~/.gridless/cluster]. The Ray
# cluster uses token authentication; the token file is STATE/ray-token, and worker
# machines join with RAY_AUTH_TOKEN set to its content (the join command printed says so).
set -euo pipefail

STATE="${GRIDLESS_CLUSTER_DIR:-$HOME/.gridless/cluster}"
RAY_PORT=6379
MASTER_PORT=8765
HOST=""
IP=""
RUN_DIR=""
STORE=""
DATABASE_URL=""
HEAD_CPUS=0
NODE_CPUS=1
NODE_CPUS_SET=""
NODE_GPUS=""
OBJECT_STORE_MB=200
ADDRESS=""
ADVERTISE_URL=""
LOCAL=""

die() { echo "launch.sh: $*" >&2; exit 2; }
say() { echo "launch.sh: $*"; }

usage() { sed -n '2,35p' "$0" | sed 's/^# \{0,1\}//'; }

need() {
  command -v "$1" >/dev/null 2>&1 ||
    die "'$1' is not on PATH; activate the environment gridless is installed in (pip install -e .)"
}

first_ip() { hostname -I 2>/dev/null | awk '{print $1}'; }

ray_env() {
  export RAY_AUTH_MODE=token
  if [[ -z "${RAY_AUTH_TOKEN:-}" ]]; then
    export RAY_AUTH_TOKEN_PATH="$STATE/ray-token"
  fi
}

new_secret() { python3 -c 'import secrets; print(secrets.token_urlsafe(32))'; }

wait_health() {
  local url="$1" tries=0
  until python -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
    "$url/api/v1/health" >/dev/null 2>&1; do
    tries=$((tries + 1))
    if ((tries > 120)); then
      echo "launch.sh: the master did not answer at $url; its log:" >&2
      tail -n 30 "$STATE/master.log" >&2 || true
      exit 1
    fi
    if [[ -f "$STATE/master.pid" ]] && ! kill -0 "$(cat "$STATE/master.pid")" 2>/dev/null; then
      echo "launch.sh: the master exited; its log:" >&2
      tail -n 30 "$STATE/master.log" >&2 || true
      exit 1
    fi
    sleep 0.5
  done
}

start_head() {
  need ray
  need gridless
  mkdir -p "$STATE"
  chmod 700 "$STATE"
  if [[ -f "$STATE/master.pid" ]] && kill -0 "$(cat "$STATE/master.pid")" 2>/dev/null; then
    die "a master started here is still running (pid $(cat "$STATE/master.pid")); run: $0 stop"
  fi
  [[ -s "$STATE/ray-token" ]] || (umask 077 && new_secret >"$STATE/ray-token")
  [[ -s "$STATE/master-token" ]] || (umask 077 && new_secret >"$STATE/master-token")
  ray_env
  local ip="${IP:-$(first_ip)}"
  [[ -n "$ip" ]] || die "cannot tell this machine's address; pass --ip"
  say "starting the Ray head on $ip:$RAY_PORT"
  # --block keeps each node's processes in one process group that STATE/*.pid names, so
  # `stop` ends exactly what this script started (and a fault test can kill one node).
  setsid nohup ray start --block --head --port "$RAY_PORT" --node-ip-address "$ip" \
    --num-cpus "$HEAD_CPUS" --include-dashboard false --disable-usage-stats \
    --object-store-memory $((OBJECT_STORE_MB * 1024 * 1024)) \
    >"$STATE/ray-head.log" 2>&1 </dev/null &
  echo $! >"$STATE/head.pid"
  echo "$ip:$RAY_PORT" >"$STATE/ray-address"
  wait_nodes 1 "$ip:$RAY_PORT"

  local host="${HOST:-0.0.0.0}"
  local run_dir="${RUN_DIR:-$STATE/run}"
  local url="http://$ip:$MASTER_PORT"
  local args=(master "$run_dir" --new --host "$host" --port "$MASTER_PORT"
    --ray-address "$ip:$RAY_PORT" --advertise-url "${ADVERTISE_URL:-$url}")
  [[ -n "$STORE" ]] && args+=(--store "$STORE")
  say "starting the gridless master on $host:$MASTER_PORT (log: $STATE/master.log)"
  # The tokens travel in the environment, never on a command line that ps shows.
  [[ -n "$DATABASE_URL" ]] && export GRIDLESS_DATABASE_URL="$DATABASE_URL"
  GRIDLESS_TOKEN="$(cat "$STATE/master-token")" \
    setsid nohup gridless "${args[@]}" >"$STATE/master.log" 2>&1 </dev/null &
  echo $! >"$STATE/master.pid"
  wait_health "$url"
  {
    echo "# gridless cluster started by deploy/launch.sh on $(date -u +%FT%TZ)"
    echo "export GRIDLESS_URL=$url"
    echo "export GRIDLESS_TOKEN=$(cat "$STATE/master-token")"
  } >"$STATE/cluster.env"
  chmod 600 "$STATE/cluster.env"
}

start_local_node() {
  local n="$1" address="$2"
  setsid nohup ray start --block --address "$address" --node-ip-address 127.0.0.1 \
    --num-cpus "$NODE_CPUS" ${NODE_GPUS:+--num-gpus "$NODE_GPUS"} --disable-usage-stats \
    --object-store-memory $((OBJECT_STORE_MB * 1024 * 1024)) \
    >"$STATE/node-$n.log" 2>&1 </dev/null &
  echo $! >"$STATE/node-$n.pid"
}

wait_nodes() {
  # Until $1 Ray nodes are alive at $2 (at most 120 s).
  python - "$1" "$2" <<'EOF' ||
import logging, sys, time
import ray
logging.getLogger("ray").setLevel(logging.ERROR)
want, address = int(sys.argv[1]), sys.argv[2]
deadline = time.monotonic() + 120
while True:
    try:
        ray.init(address=address, log_to_driver=False, configure_logging=False)
        break
    except (ConnectionError, RuntimeError):
        if time.monotonic() > deadline:
            sys.exit(1)
        time.sleep(1)
while sum(1 for n in ray.nodes() if n["Alive"]) < want:
    if time.monotonic() > deadline:
        sys.exit(1)
    time.sleep(0.5)
EOF
    { tail -n 20 "$STATE/ray-head.log" >&2; die "the Ray nodes did not come up; logs in $STATE"; }
}

print_summary() {
  local url token
  url="$(sed -n 's/^export GRIDLESS_URL=//p' "$STATE/cluster.env")"
  token="$(cat "$STATE/master-token")"
  echo
  echo "gridless cluster is up"
  echo "  dashboard  $url/"
  echo "  API        $url/api/v1  (docs at $url/docs)"
  echo "  token      $token"
  echo "  Ray        $(cat "$STATE/ray-address")"
  echo
  echo "In a shell on this machine:"
  echo "  . $STATE/cluster.env"
  echo "  gridless submit examples/digits.yaml --workers 2"
  if [[ -z "$LOCAL" ]]; then
    echo
    echo "On each worker machine (same Python environment, gridless installed):"
    echo "  RAY_AUTH_TOKEN=$(cat "$STATE/ray-token") deploy/launch.sh worker --address $(cat "$STATE/ray-address")"
  fi
  echo "Stop everything started here: deploy/launch.sh stop"
}

cmd_local() {
  [[ "$LOCAL" =~ ^[1-9][0-9]?$ ]] || die "--local takes a number of worker nodes (1-99), got '$LOCAL'"
  IP=127.0.0.1
  HOST="${HOST:-127.0.0.1}"
  start_head
  local address
  address="$(cat "$STATE/ray-address")"
  for n in $(seq 1 "$LOCAL"); do
    say "starting worker node $n of $LOCAL"
    start_local_node "$n" "$address"
    # One at a time: nodes registering at once on one machine time each other out.
    wait_nodes $((n + 1)) "$address"
  done
  say "$((LOCAL + 1)) Ray nodes alive (a head and $LOCAL worker nodes)"
  print_summary
}

cmd_head() {
  start_head
  print_summary
}

cmd_worker() {
  need ray
  [[ -n "$ADDRESS" ]] || die "worker needs --address HEAD_IP:PORT (printed by 'launch.sh head')"
  mkdir -p "$STATE"
  ray_env
  [[ -n "${RAY_AUTH_TOKEN:-}" || -s "$STATE/ray-token" ]] ||
    die "set RAY_AUTH_TOKEN to the head's STATE/ray-token (the join command printed by 'launch.sh head' does)"
  local ip="${IP:-$(first_ip)}"
  setsid nohup ray start --block --address "$ADDRESS" --node-ip-address "$ip" \
    --disable-usage-stats ${NODE_CPUS_SET:+--num-cpus "$NODE_CPUS"} \
    ${NODE_GPUS:+--num-gpus "$NODE_GPUS"} \
    >"$STATE/node-1.log" 2>&1 </dev/null &
  echo $! >"$STATE/node-1.pid"
  sleep 5
  kill -0 "$(cat "$STATE/node-1.pid")" 2>/dev/null ||
    { tail -n 20 "$STATE/node-1.log" >&2; die "ray start failed (log: $STATE/node-1.log)"; }
  say "joined the Ray cluster at $ADDRESS as $ip (log: $STATE/node-1.log; leave: $0 stop)"
}

cmd_status() {
  ray_env
  if [[ -f "$STATE/master.pid" ]] && kill -0 "$(cat "$STATE/master.pid")" 2>/dev/null; then
    echo "master: running (pid $(cat "$STATE/master.pid")), $(sed -n 's/^export GRIDLESS_URL=//p' "$STATE/cluster.env")"
  else
    echo "master: not running"
  fi
  if [[ -f "$STATE/ray-address" ]]; then
    ray status --address "$(cat "$STATE/ray-address")" 2>/dev/null | sed -n '/Node status/,/Pending/p' ||
      echo "ray: not reachable at $(cat "$STATE/ray-address")"
  fi
}

cmd_stop() {
  ray_env
  if [[ -f "$STATE/master.pid" ]]; then
    local pid
    pid="$(cat "$STATE/master.pid")"
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
      kill -KILL "$pid" 2>/dev/null || true
      say "master stopped"
    fi
    rm -f "$STATE/master.pid"
  fi
  # Worker nodes first, the head last; only the process groups this script started.
  local stopped=0 group
  for pidfile in "$STATE"/node-*.pid "$STATE"/head.pid; do
    [[ -f "$pidfile" ]] || continue
    group="$(cat "$pidfile")"
    if kill -TERM -- "-$group" 2>/dev/null; then
      stopped=$((stopped + 1))
      for _ in $(seq 1 40); do kill -0 -- "-$group" 2>/dev/null || break; sleep 0.25; done
      kill -KILL -- "-$group" 2>/dev/null || true
    fi
    rm -f "$pidfile"
  done
  ((stopped == 0)) || say "$stopped Ray node(s) stopped"
  rm -f "$STATE/ray-address" "$STATE/cluster.env"
}

COMMAND=""
while (($#)); do
  case "$1" in
    --local) LOCAL="${2:-}"; COMMAND=local; shift 2 || die "--local needs a number" ;;
    head | worker | status | stop) COMMAND="$1"; shift ;;
    --address) ADDRESS="${2:-}"; shift 2 || die "--address needs HOST:PORT" ;;
    --ray-port) RAY_PORT="${2:-}"; shift 2 || die "--ray-port needs a port" ;;
    --master-port) MASTER_PORT="${2:-}"; shift 2 || die "--master-port needs a port" ;;
    --host) HOST="${2:-}"; shift 2 || die "--host needs an address" ;;
    --ip) IP="${2:-}"; shift 2 || die "--ip needs an address" ;;
    --run-dir) RUN_DIR="${2:-}"; shift 2 || die "--run-dir needs a folder" ;;
    --advertise-url) ADVERTISE_URL="${2:-}"; shift 2 || die "--advertise-url needs a URL" ;;
    --store) STORE="${2:-}"; shift 2 || die "--store needs a location" ;;
    --database-url) DATABASE_URL="${2:-}"; shift 2 || die "--database-url needs a URL" ;;
    --head-cpus) HEAD_CPUS="${2:-}"; shift 2 || die "--head-cpus needs a number" ;;
    --node-cpus) NODE_CPUS="${2:-}"; NODE_CPUS_SET=1; shift 2 || die "--node-cpus needs a number" ;;
    --node-gpus) NODE_GPUS="${2:-}"; shift 2 || die "--node-gpus needs a number" ;;
    --object-store-mb) OBJECT_STORE_MB="${2:-}"; shift 2 || die "--object-store-mb needs a number" ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument '$1'" ;;
  esac
done

for value in "$RAY_PORT" "$MASTER_PORT" "$HEAD_CPUS" "$NODE_CPUS" "$OBJECT_STORE_MB" \
  ${NODE_GPUS:+"$NODE_GPUS"}; do
  [[ "$value" =~ ^[0-9]+$ ]] || die "expected a number, got '$value'"
done

case "$COMMAND" in
  local) cmd_local ;;
  head) cmd_head ;;
  worker) cmd_worker ;;
  status) cmd_status ;;
  stop) cmd_stop ;;
  *) usage >&2; exit 2 ;;
esac
