#!/usr/bin/env bash
# Side-by-side benchmark of toolgate against pinned peers (issue 15; see BENCHMARKS.md, "Peers").
#
# Installs the peers into a directory of its own (BENCH_PEERS, default /work/bench-peers; never
# tests/peers), then runs, in one run and interleaved (the order of the paths rotates from one
# pair or round to the next, so drifting load from other work hits every path alike):
#   http      wrk, HTTP->HTTP at 1 and 8 connections, against server-everything and the
#             sandbox's rmcp upstream: direct, socat, toolgate serve, joshrotenberg mcp-proxy,
#             the bare hyper floor (crates/proxy/examples/floor_proxy.rs) when HTTP_PATHS names it
#             (and, against server-everything, direct and toolgate without Mcp-Protocol-Version:
#             what josh sends upstream)
#   multiuser wrk against the sandbox in Composio mode: toolgate single-user, single-user with
#             session_key (sealed ids), auth.mode=tokens with session_key (identity + seal)
#   stdio     bench/lat.py, one call at a time: per-call latency, bridge CPU per call and RSS of
#             toolgate stdio, mcp-remote, supergateway, sparfenyuk mcp-proxy (the SDK's client);
#             toolgate stdio and toolgate serve driven by the same lean client loop (`rawstdio`,
#             `http`): the stdio/HTTP CPU ratio comes from those two, same pacing, same run
#   syscalls  strace -c of toolgate serve (and joshrotenberg mcp-proxy) over a fixed number of
#             requests at one connection
#   oneshot   hyperfine: start -> initialize -> one call -> exit, each stdio bridge
# Every answer is checked ("Echo: hi"); a run with a bad answer or a socket error is reported
# as such and the summary counts them. The load average is recorded with every run.
# Knobs: SECTIONS, EVERYTHING_WARMUP (seconds of wrk against a freshly started server-everything, default 20), HTTP_PATHS (default "direct socat toolgate josh"; add "floor" for the bare hyper proxy, FLOOR_BIN to measure a built one), PAIRS, RUN, ROUNDS, N, WARMUP, SYSCALL_N, ONESHOT_RUNS, SKIP_BUILD,
# TOOLGATE_BIN (a toolgate binary to measure instead of building one; implies SKIP_BUILD) and
# BIN_COMMIT (the commit that binary was built from, for the header).
# Not part of CI. Prints markdown tables at the end (bench/peers_report.py).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
SECTIONS=${SECTIONS:-http multiuser stdio syscalls oneshot}
PAIRS=${PAIRS:-3}
RUN=${RUN:-8}
ROUNDS=${ROUNDS:-3}
N=${N:-500}
WARMUP=${WARMUP:-20}
SYSCALL_N=${SYSCALL_N:-2000}
HTTP_PATHS=${HTTP_PATHS:-direct socat toolgate josh}
bp=${BENCH_PEERS:-/work/bench-peers}
peers=${TOOLGATE_PEERS:-$root/target/peers}
out_dir=$root/bench/results
mkdir -p "$out_dir" "$bp"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
out=$out_dir/peers-$stamp.txt
logs=$out_dir/peers-$stamp.logs
mkdir -p "$logs"

# --- install the pinned peers (each step skipped when already there) ---
JOSH_VERSION=0.6.0          # crates.io `mcp-proxy` (joshrotenberg), Rust
MCP_REMOTE_VERSION=0.15.1   # npm `mcp-remote`
SUPERGATEWAY_VERSION=4.0.0  # npm `supergateway`
SPARFENYUK_VERSION=0.13.0   # PyPI `mcp-proxy` (sparfenyuk), Python
for tool in wrk socat hyperfine strace; do
  if ! command -v $tool >/dev/null; then
    echo "bench: installing $tool (apt)" >&2
    apt-get install -y $tool >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y $tool >/dev/null; }
  fi
done
[ -x "$peers/node/node_modules/.bin/mcp-server-everything" ] && [ -x "$peers/venv/bin/python" ] || bash tests/peers/install.sh
has() { [[ " $SECTIONS " == *" $1 "* ]]; }
josh=$bp/josh/bin/mcp-proxy
# The binary has no --version: ask cargo what it installed there.
josh_installed() { [ -x "$josh" ] && cargo install --list --root "$bp/josh" 2>/dev/null | grep -q "^mcp-proxy v$JOSH_VERSION:"; }
if [[ " $HTTP_PATHS " == *" josh "* ]] && { has http || has syscalls; } && ! josh_installed; then
  echo "bench: cargo install mcp-proxy $JOSH_VERSION (about 10 minutes of CPU)" >&2
  # A target dir of its own, kept: an interrupted install resumes instead of starting over.
  CARGO_TARGET_DIR=$bp/josh-target CARGO_INCREMENTAL=0 nice cargo install --locked --version "$JOSH_VERSION" mcp-proxy --root "$bp/josh" >&2
fi
if ! [ -f "$bp/node/.pins" ] || [ "$(cat "$bp/node/.pins")" != "$MCP_REMOTE_VERSION $SUPERGATEWAY_VERSION" ]; then
  mkdir -p "$bp/node"
  printf '{"name":"toolgate-bench-peers","private":true,"dependencies":{"mcp-remote":"%s","supergateway":"%s"}}\n' \
    "$MCP_REMOTE_VERSION" "$SUPERGATEWAY_VERSION" > "$bp/node/package.json"
  (cd "$bp/node" && npm install --no-audit --no-fund --loglevel=error >&2)
  echo "$MCP_REMOTE_VERSION $SUPERGATEWAY_VERSION" > "$bp/node/.pins"
fi
if ! "$bp/venv/bin/python" -c "import importlib.metadata as m; assert m.version('mcp-proxy') == '$SPARFENYUK_VERSION'" 2>/dev/null; then
  python3 -m venv "$bp/venv"
  "$bp/venv/bin/pip" install --quiet --disable-pip-version-check "mcp-proxy==$SPARFENYUK_VERSION"
fi
remote=$bp/node/node_modules/.bin/mcp-remote
supergw=$bp/node/node_modules/supergateway/dist/index.js
sparf=$bp/venv/bin/mcp-proxy
py=$peers/venv/bin/python   # the client: Python mcp SDK pinned by tests/peers
everything=$peers/node/node_modules/.bin/mcp-server-everything

# A target dir of its own, so the release build never holds the lock of the everyday one.
bench_target=${BENCH_TARGET_DIR:-$root/target/bench}
if [ -n "${TOOLGATE_BIN:-}" ]; then
  bin=$(realpath "$TOOLGATE_BIN")
else
  if [ -z "${SKIP_BUILD:-}" ]; then
    echo "bench: building the release binary in $bench_target" >&2
    cargo build --release --locked -p toolgate --target-dir "$bench_target" >&2
  fi
  bin=$bench_target/release/toolgate
fi
# The floor: hyper server + hyper-util client and nothing else (crates/proxy/examples).
if [[ " $HTTP_PATHS " == *" floor "* ]]; then
  if [ -n "${FLOOR_BIN:-}" ]; then
    floor=$(realpath "$FLOOR_BIN")
  else
    cargo build --release --locked -p toolgate-proxy --example floor_proxy --target-dir "$bench_target" >&2
    floor=$bench_target/release/examples/floor_proxy
  fi
fi

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

. "$root/bench/lib.sh"
load() { cut -d' ' -f1 /proc/loadavg; }
stop() { for pid in "$@"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done; }
# rotate K WORD... -> the words rotated left by K (the interleaving order of pair/round K)
rotate() { local k=$1; shift; local a=("$@") n=$#; for i in $(seq 0 $((n - 1))); do printf '%s ' "${a[$(((i + k) % n))]}"; done; }

# wrk_run SECTION UPSTREAM PATH CONNS PAIR URL TOOL [PV] [AUTH] [HEADER]; CPU_PIDS ("name:pid")
# get their CPU time per request reported, in microseconds.
wrk_run() {
  local section=$1 up=$2 path=$3 conns=$4 pair=$5 url=$6 tool=$7 pv=${8:-2025-11-25} auth=${9:-} header=${10:-}
  local sid threads=1 line before=() cpu="" i=0 rps l
  local sh=(); [ -n "$auth" ] && sh+=("Authorization: $auth"); [ -n "$header" ] && sh+=("$header")
  sid=$(mksession "$url" "${sh[@]}")
  [ "$conns" -gt 1 ] && threads=2
  l=$(load)
  for entry in ${CPU_PIDS:-}; do before+=("$(cpu_ticks "${entry#*:}")"); done
  line=$(SID=$sid TOOL=$tool PV=$pv AUTH=$auth APIKEY=${header#x-api-key: } \
    wrk -t$threads -c$conns -d${RUN}s --latency -s bench/http_echo.lua "$url" | grep '^RESULT')
  rps=$(echo "$line" | sed 's/.*rps=\([0-9.]*\).*/\1/')
  for entry in ${CPU_PIDS:-}; do
    cpu+=" cpu_us_${entry%%:*}=$(awk -v a="${before[$i]}" -v b="$(cpu_ticks "${entry#*:}")" -v t="$clk_tck" -v r="$rps" -v d="$RUN" 'BEGIN {printf "%.1f", (b - a) / t * 1e6 / (r * d)}')"
    i=$((i + 1))
  done
  echo "R $section upstream=$up path=$path conns=$conns pair=$pair load=$l ${line#RESULT }$cpu" | tee -a "$out"
}

start_toolgate() { # UPSTREAM [header...] -> tg_url, tg_pid
  local port; port=$(free_port)
  "$bin" serve --listen 127.0.0.1:$port --threads 1 --upstream "$@" --log-level warn 2>>"$logs/toolgate.log" &
  tg_pid=$!; pids+=($tg_pid); wait_port $port; tg_url=http://127.0.0.1:$port/mcp
}

start_josh() { # UPSTREAM [x-api-key] -> josh_url, josh_pid (backend "b": tools are b/NAME)
  local port conf; port=$(free_port); conf=$logs/josh-$port.toml
  {
    printf '[proxy]\nname = "bench"\n\n[proxy.listen]\nhost = "127.0.0.1"\nport = %s\n\n' "$port"
    printf '[[backends]]\nname = "b"\ntransport = "http"\nurl = "%s"\n' "$1"
    [ -n "${2:-}" ] && printf 'headers = { "x-api-key" = "%s" }\n' "$2"
    printf '\n[observability]\naudit = false\nlog_level = "warn"\n'
  } > "$conf"
  "$josh" --config "$conf" >>"$logs/josh.log" 2>&1 &
  josh_pid=$!; pids+=($josh_pid); wait_port $port; josh_url=http://127.0.0.1:$port/
}

start_floor() { # UPSTREAM_URL -> floor_url, floor_pid
  local port; port=$(free_port)
  "$floor" 127.0.0.1:$port "$1" >/dev/null 2>>"$logs/floor.log" &
  floor_pid=$!; pids+=($floor_pid); wait_port $port; floor_url=http://127.0.0.1:$port/mcp
}

start_socat() { # PORT -> relay_port, relay_pid
  relay_port=$(free_port)
  socat TCP-LISTEN:$relay_port,bind=127.0.0.1,reuseaddr,fork,nodelay TCP:127.0.0.1:$1,nodelay &
  relay_pid=$!; pids+=($relay_pid); wait_port $relay_port
}

start_everything() { # -> se_port, se_pid, se_url
  se_port=$(free_port)
  PORT=$se_port node "$everything" streamableHttp >/dev/null 2>&1 &
  se_pid=$!; pids+=($se_pid); wait_port $se_port; se_url=http://127.0.0.1:$se_port/mcp
  # Node's JIT is cold after a start: without this, whichever path runs first after a restart
  # measured up to 2x slower (seen in interleaved A/Bs), and with more paths than pairs the
  # rotation gives that slot to some paths and never to others. 3 s was not enough: after it,
  # Node's CPU per call still fell from 4.5 to 2.3 ms over the next 28 s of one-connection runs.
  local sid; sid=$(mksession "$se_url")
  SID=$sid TOOL=echo PV=2025-11-25 AUTH= APIKEY= \
    wrk -t2 -c8 -d${EVERYTHING_WARMUP:-20}s -s bench/http_echo.lua "$se_url" >/dev/null
}

key=sk_sandbox_demo
start_sandbox() { # -> sb_port, sb_pid
  sb_port=$(free_port)
  "$bin" sandbox --listen 127.0.0.1:$sb_port 2>>"$logs/sandbox.log" &
  sb_pid=$!; pids+=($sb_pid); wait_port $sb_port
}
sandbox_session() { # USER -> the MCP URL of a new tool-router session
  curl -sS -H "x-api-key: $key" -H 'Content-Type: application/json' \
    "http://127.0.0.1:$sb_port/api/v3.1/tool_router/session" -d "{\"user_id\":\"$1\"}" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["mcp"]["url"])'
}

{
  echo "# $(date -u) $(uname -srm)"
  echo "# commit: $(git rev-parse HEAD) ($(git log -1 --format=%s | cut -c1-80)); binary built from: ${BIN_COMMIT:-the same}"
  echo "# main: $(git rev-parse main 2>/dev/null || echo '?')  dirty: $(git status --porcelain -- crates Cargo.lock | wc -l) files"
  echo "# cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs) x $(nproc)"
  echo "# load before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# sections='$SECTIONS' pairs=$PAIRS run=${RUN}s rounds=$ROUNDS n=$N warmup=$WARMUP syscall_n=$SYSCALL_N"
  echo "# peers: joshrotenberg mcp-proxy $(josh_installed && echo "$JOSH_VERSION" || echo none), mcp-remote $MCP_REMOTE_VERSION, supergateway $SUPERGATEWAY_VERSION, sparfenyuk mcp-proxy $("$bp/venv/bin/python" -c "import importlib.metadata as m; print(m.version('mcp-proxy'))"), client mcp $("$py" -c "import importlib.metadata as m; print(m.version('mcp'))"), node $(node --version), $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2)"
} | tee "$out"

# --- http: direct, socat, toolgate, joshrotenberg mcp-proxy, HTTP -> HTTP ---
http_pair() { # UPSTREAM CONNS PAIR  (upstream and proxies fresh for every pair)
  local up=$1 conns=$2 pair=$3 url tool hdr="" apikey="" upstream_pid port
  if [ "$up" = everything ]; then
    start_everything; url=$se_url; tool=echo; upstream_pid=$se_pid; port=$se_port
  else
    url=$(sandbox_session bench); tool=SANDBOX_ECHO; upstream_pid=$sb_pid; port=$sb_port
    hdr="x-api-key: $key"; apikey=$key
  fi
  if [ -n "$hdr" ]; then start_toolgate "$url" --header "$hdr"; else start_toolgate "$url"; fi
  josh_pid=""; [[ " $HTTP_PATHS " == *" josh "* ]] && start_josh "$url" "$apikey"
  floor_pid=""; [[ " $HTTP_PATHS " == *" floor "* ]] && start_floor "$url"
  start_socat "$port"
  local relay_url=${url/:$port\//:$relay_port/}
  if [ "$conns" = 1 ] && [ "$pair" = 1 ]; then
    echo "R rss upstream=$up when=idle toolgate=$(rss_kib $tg_pid)${josh_pid:+ josh=$(rss_kib $josh_pid)}" | tee -a "$out"
  fi
  local paths=($HTTP_PATHS)
  # server-everything is 2-4x slower per call when requests carry Mcp-Protocol-Version, and
  # joshrotenberg mcp-proxy 0.6.0 sends none upstream (it negotiates 2025-11-25, then drops the
  # header the spec requires). Like with like: direct-nopv is the upstream josh actually sees,
  # and toolgate-nopv is toolgate with a client that sends no header (toolgate adds none).
  if [ "$up" = everything ]; then
    [[ " $HTTP_PATHS " == *" direct "* ]] && paths+=(direct-nopv)
    [[ " $HTTP_PATHS " == *" toolgate "* ]] && paths+=(toolgate-nopv)
  fi
  for path in $(rotate "$pair" "${paths[@]}"); do
    case $path in
      direct) CPU_PIDS="upstream:$upstream_pid" wrk_run http "$up" direct "$conns" "$pair" "$url" "$tool" 2025-11-25 "" "$hdr" ;;
      direct-nopv) CPU_PIDS="upstream:$upstream_pid" wrk_run http "$up" direct-nopv "$conns" "$pair" "$url" "$tool" none "" "$hdr" ;;
      socat) CPU_PIDS="upstream:$upstream_pid" wrk_run http "$up" socat "$conns" "$pair" "$relay_url" "$tool" 2025-11-25 "" "$hdr" ;;
      toolgate) CPU_PIDS="upstream:$upstream_pid proxy:$tg_pid" wrk_run http "$up" toolgate "$conns" "$pair" "$tg_url" "$tool" ;;
      toolgate-nopv) CPU_PIDS="upstream:$upstream_pid proxy:$tg_pid" wrk_run http "$up" toolgate-nopv "$conns" "$pair" "$tg_url" "$tool" none ;;
      floor) CPU_PIDS="upstream:$upstream_pid proxy:$floor_pid" wrk_run http "$up" floor "$conns" "$pair" "$floor_url" "$tool" 2025-11-25 "" "$hdr" ;;
      josh) CPU_PIDS="upstream:$upstream_pid proxy:$josh_pid" wrk_run http "$up" josh "$conns" "$pair" "$josh_url" "b/$tool" ;;
    esac
  done
  if [ "$conns" = 8 ] && [ "$pair" = "$PAIRS" ]; then
    echo "R rss upstream=$up when=loaded toolgate=$(rss_kib $tg_pid)${josh_pid:+ josh=$(rss_kib $josh_pid)}" | tee -a "$out"
  fi
  stop $tg_pid $josh_pid $floor_pid $relay_pid
  [ "$up" = everything ] && stop $se_pid
  return 0
}

# --- multiuser: the identity check and sealed session ids against single-user mode ---
mu_env() { # MODE -> env assignments for a Composio-mode toolgate against the sandbox
  local state=$logs/state-$1
  mkdir -p "$state"
  echo "COMPOSIO_API_KEY=$key COMPOSIO_BASE_URL=http://127.0.0.1:$sb_port XDG_STATE_HOME=$state TOOLGATE_LOG_LEVEL=warn"
  case $1 in
    single) echo "TOOLGATE_USER_ID=bench" ;;
    sealed) echo "TOOLGATE_USER_ID=bench TOOLGATE_SESSION_KEY=$session_key" ;;
    tokens) echo "TOOLGATE_AUTH_MODE=tokens TOOLGATE_AUTH_TOKENS_FILE=$logs/tokens TOOLGATE_SESSION_KEY=$session_key" ;;
  esac
}
session_key=bench-session-key-0123456789abcdef-0123456789
bench_token=bench-token-0123456789abcdef
multiuser_pair() { # CONNS PAIR
  local conns=$1 pair=$2 mode port
  declare -A mu_url mu_pid
  printf '# bench users\nalice alice-token-0123456789abcdef\nbench %s\n' "$bench_token" > "$logs/tokens"
  for mode in single sealed tokens; do
    port=$(free_port)
    env $(mu_env $mode) "$bin" serve --listen 127.0.0.1:$port --threads 1 2>>"$logs/toolgate-$mode.log" &
    mu_pid[$mode]=$!; pids+=(${mu_pid[$mode]}); wait_port $port; mu_url[$mode]=http://127.0.0.1:$port/mcp
  done
  if [ "$conns" = 1 ] && [ "$pair" = 1 ]; then
    echo "R rss upstream=sandbox-composio when=idle single=$(rss_kib ${mu_pid[single]}) sealed=$(rss_kib ${mu_pid[sealed]}) tokens=$(rss_kib ${mu_pid[tokens]})" | tee -a "$out"
  fi
  for mode in $(rotate "$pair" single sealed tokens); do
    local auth=""; [ $mode = tokens ] && auth="Bearer $bench_token"
    CPU_PIDS="proxy:${mu_pid[$mode]}" wrk_run multiuser sandbox-composio "$mode" "$conns" "$pair" "${mu_url[$mode]}" SANDBOX_ECHO 2025-11-25 "$auth"
  done
  stop ${mu_pid[single]} ${mu_pid[sealed]} ${mu_pid[tokens]}
}

# --- stdio: per-call latency, bridge CPU per call and RSS, one call at a time ---
# lat LABEL... : runs bench/lat.py with the rest of the arguments and records its JSON line.
lat() {
  local up=$1 path=$2 round=$3 l line; shift 3
  l=$(load)
  line=$("$@" 2>>"$logs/stdio-$path.log") || line='{"error": "failed, see the log"}'
  echo "R stdio upstream=$up path=$path round=$round load=$l $line" | tee -a "$out"
}
stdio_round() { # UPSTREAM ROUND
  local up=$1 round=$2 url args='{"message":"hi"}' tool
  local th=() rh=() sh=() ph=() lh=()
  if [ "$up" = everything ]; then
    start_everything; url=$se_url; tool=echo
  else
    url=$(sandbox_session bench); tool=SANDBOX_ECHO
    th=(--header "x-api-key: $key"); rh=(--header "x-api-key:$key"); sh=(--header "x-api-key: $key")
    ph=(-H x-api-key "$key"); lh=("x-api-key: $key")
  fi
  start_toolgate "$url" "${th[@]}"
  local paths=(http toolgate-http toolgate toolgate-raw mcp-remote supergateway sparfenyuk)
  [ "$up" = everything ] && paths+=(stdio-direct)
  for path in $(rotate "$round" "${paths[@]}"); do
    case $path in
      http) lat "$up" http "$round" "$py" bench/lat.py http "$N" "$WARMUP" "$tool" "$args" "$url" "${lh[@]}" ;;
      toolgate-http) CPU_PIDS="toolgate:$tg_pid" lat "$up" toolgate-http "$round" "$py" bench/lat.py http "$N" "$WARMUP" "$tool" "$args" "$tg_url" ;;
      toolgate) lat "$up" toolgate "$round" "$py" bench/lat.py stdio "$N" "$WARMUP" "$tool" "$args" "$bin" stdio --upstream "$url" "${th[@]}" ;;
      toolgate-raw) lat "$up" toolgate-raw "$round" "$py" bench/lat.py rawstdio "$N" "$WARMUP" "$tool" "$args" "$bin" stdio --upstream "$url" "${th[@]}" ;;
      mcp-remote) lat "$up" mcp-remote "$round" "$py" bench/lat.py stdio "$N" "$WARMUP" "$tool" "$args" node "$remote" "$url" --silent "${rh[@]}" ;;
      supergateway) lat "$up" supergateway "$round" "$py" bench/lat.py stdio "$N" "$WARMUP" "$tool" "$args" node "$supergw" --streamableHttp "$url" --logLevel none "${sh[@]}" ;;
      sparfenyuk) lat "$up" sparfenyuk "$round" "$py" bench/lat.py stdio "$N" "$WARMUP" "$tool" "$args" "$sparf" --transport streamablehttp --log-level WARNING "${ph[@]}" "$url" ;;
      stdio-direct) lat "$up" stdio-direct "$round" "$py" bench/lat.py stdio "$N" "$WARMUP" "$tool" "$args" node "$everything" stdio ;;
    esac
  done
  stop $tg_pid
  [ "$up" = everything ] && stop $se_pid
  return 0
}

# --- syscalls: every system call of the proxy over a fixed number of requests at one connection ---
# Counted with `perf stat` on the syscall tracepoints when perf can open them (it does not slow
# the process), else with `strace -f -c` (which does: more of what the upstream writes in
# pieces then arrives together). Each proxy twice: with the client's head and body in two
# writes (http.client, like httpx) and in one (ONE_WRITE=1, like wrk).
syscall_counter=strace
if command -v perf >/dev/null && perf stat -e raw_syscalls:sys_enter -x, -o /dev/null true 2>/dev/null; then
  syscall_counter=perf
fi
syscalls_of() { # NAME PID URL TOOL: both client kinds
  local client
  for client in split one-write; do syscalls_once "$@" "$client"; done
}
# A relay that does nothing, for scale: socat without `fork` serves one connection in its own
# process (lat.py makes one), so its counter sees every call; one socat per client kind.
listening() { # PORT: waits without connecting (a probe would be the one connection it serves)
  for _ in $(seq 1 400); do ss -Hltn "sport = :$1" | grep -q . && return 0; sleep 0.05; done
  echo "port $1 never opened" >&2; return 1
}
syscalls_of_socat() { # UPSTREAM_URL
  local client port relay
  for client in split one-write; do
    port=$(free_port)
    socat TCP-LISTEN:$port,bind=127.0.0.1,reuseaddr,nodelay TCP:127.0.0.1:$sb_port,nodelay &
    relay=$!; pids+=($relay); listening $port
    syscalls_once socat "$relay" "${1/:$sb_port\//:$port/}" SANDBOX_ECHO "$client" "x-api-key: $key"
    stop $relay
  done
}
syscalls_once() { # NAME PID URL TOOL CLIENT [HEADER]
  local name=$1 pid=$2 url=$3 tool=$4 client=$5 header=${6:-} trace counter_pid l
  trace=$logs/syscalls-$name-$client.txt l=$(load)
  if [ $syscall_counter = perf ]; then
    perf stat -x, -o "$trace" -p "$pid" -e raw_syscalls:sys_enter,syscalls:sys_enter_recvfrom,syscalls:sys_enter_read,syscalls:sys_enter_writev,syscalls:sys_enter_write,syscalls:sys_enter_sendto,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_pselect6,syscalls:sys_enter_futex 2>>"$logs/strace.log" &
  else
    strace -f -c -o "$trace" -p "$pid" 2>>"$logs/strace.log" &
  fi
  counter_pid=$!; pids+=($counter_pid)
  sleep 1 # the counter attaches to every thread before the first request
  ONE_WRITE=$([ $client = one-write ] && echo 1 || echo 0) "$py" bench/lat.py http "$SYSCALL_N" 0 "$tool" '{"message":"hi"}' "$url" ${header:+"$header"} >/dev/null
  kill -INT $counter_pid; wait $counter_pid 2>/dev/null || true
  # lat.py also sends initialize and notifications/initialized: SYSCALL_N + 2 requests.
  python3 - "$trace" "$name" "$((SYSCALL_N + 2))" "$l" "$client" "$syscall_counter" <<'PY' | tee -a "$out"
import sys
path, name, requests, load, client, counter = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
calls, total = {}, None
for line in open(path):
    if counter == "perf":
        fields = line.strip().split(",")
        if len(fields) > 2 and fields[0].isdigit():
            event = fields[2]
            if event == "raw_syscalls:sys_enter":
                total = int(fields[0])
            elif event.startswith("syscalls:sys_enter_"):
                calls[event.removeprefix("syscalls:sys_enter_")] = int(fields[0])
    else:
        parts = line.split()
        if len(parts) >= 5 and parts[-1] not in ("syscall", "total") and parts[3].isdigit():
            calls[parts[-1]] = int(parts[3])
total = total if total is not None else sum(calls.values())
top = " ".join(f"{k}={v / requests:.2f}" for k, v in sorted(calls.items(), key=lambda kv: -kv[1]) if v / requests >= 0.05)
print(f"R syscalls path={name} client={client} counter={counter} requests={requests} load={load} per_request={total / requests:.2f} {top}")
PY
}

# --- the run ---
if has http || has multiuser || has stdio || has syscalls; then start_sandbox; fi
if has http; then
  echo "# http: load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out"
  for conns in 1 8; do
    for pair in $(seq 1 "$PAIRS"); do
      http_pair everything "$conns" "$pair"
      http_pair sandbox "$conns" "$pair"
    done
  done
fi
if has multiuser; then
  echo "# multiuser: load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out"
  for conns in 1 8; do
    for pair in $(seq 1 "$PAIRS"); do multiuser_pair "$conns" "$pair"; done
  done
fi
if has stdio; then
  echo "# stdio: load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out"
  for round in $(seq 1 "$ROUNDS"); do
    stdio_round everything "$round"
    stdio_round sandbox "$round"
  done
fi
if has syscalls; then
  echo "# syscalls: load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out"
  url=$(sandbox_session bench)
  start_toolgate "$url" --header "x-api-key: $key"
  syscalls_of toolgate "$tg_pid" "$tg_url" SANDBOX_ECHO
  if [[ " $HTTP_PATHS " == *" josh "* ]]; then
    start_josh "$url" "$key"
    syscalls_of josh "$josh_pid" "$josh_url" b/SANDBOX_ECHO
    stop $josh_pid
  fi
  stop $tg_pid
  syscalls_of_socat "$url"
fi
if has oneshot; then
  echo "# oneshot: load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out"
  start_everything
  a='{"message":"hi"}' l=$(load)
  hyperfine -N -w 2 -r "${ONESHOT_RUNS:-15}" --export-json "$logs/oneshot.json" \
    -n toolgate "$py bench/lat.py oneshot echo '$a' $bin stdio --upstream $se_url" \
    -n mcp-remote "$py bench/lat.py oneshot echo '$a' node $remote $se_url --silent" \
    -n supergateway "$py bench/lat.py oneshot echo '$a' node $supergw --streamableHttp $se_url --logLevel none" \
    -n sparfenyuk "$py bench/lat.py oneshot echo '$a' $sparf --transport streamablehttp --log-level WARNING $se_url" \
    >>"$logs/hyperfine.txt" 2>&1
  python3 - "$logs/oneshot.json" "$l" <<'PY' | tee -a "$out"
import json, sys
for r in json.load(open(sys.argv[1]))["results"]:
    print(f"R oneshot path={r['command']} load={sys.argv[2]} mean_ms={r['mean']*1000:.0f} median_ms={r['median']*1000:.0f} sd_ms={r['stddev']*1000:.0f} runs={len(r['times'])}")
PY
  stop $se_pid
fi
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out"
python3 bench/peers_report.py "$out" | tee "$out_dir/peers-$stamp.md"
echo "bench: results in $out and $out_dir/peers-$stamp.md" >&2
