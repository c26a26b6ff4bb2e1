#!/usr/bin/env bash
# HTTP overhead benchmark of `toolgate serve` (see BENCHMARKS.md for method and results).
#
# For each upstream (server-everything, and the sandbox's Rust MCP upstream) and each
# connection count (1, 8): PAIRS interleaved pairs of RUN-second wrk runs, direct (A) then
# through toolgate (B), each run on its own fresh session, tools/call echo with unique ids.
# Prints one RESULT line per run and a median summary; writes everything to bench/results/.
# Not part of CI. Run it on a quiet machine (check `uptime`).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
PAIRS=${PAIRS:-3}
RUN=${RUN:-10}
peers=${TOOLGATE_PEERS:-$root/target/peers}
out_dir=$root/bench/results
mkdir -p "$out_dir"
out=$out_dir/http-$(date -u +%Y%m%dT%H%M%SZ).txt

for tool in wrk socat; do
  if ! command -v $tool >/dev/null; then
    echo "bench: installing $tool (apt)" >&2
    apt-get install -y $tool >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y $tool >/dev/null; }
  fi
done
[ -x "$peers/node/node_modules/.bin/mcp-server-everything" ] || bash tests/peers/install.sh
# A target dir of its own, so the release build never holds the lock of the everyday one.
bench_target=${BENCH_TARGET_DIR:-$root/target/bench}
if [ -z "${SKIP_BUILD:-}" ]; then
  echo "bench: building the release binary in $bench_target" >&2
  cargo build --release -p toolgate --target-dir "$bench_target" >&2
fi
bin=$bench_target/release/toolgate

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# Ports get 10 s to open here (200 tries of 50 ms), as before the helpers were shared.
WAIT_PORT_TRIES=200
. "$root/bench/lib.sh"

# run LABEL URL TOOL CONNS [x-api-key]; CPU_PIDS (space-separated "name:pid") get their CPU
# time per request reported, in microseconds.
run() {
  local label=$1 url=$2 tool=$3 conns=$4 key=${5:-} sid threads=1 line before=() cpu="" i=0 rps
  sid=$(mksession "$url" ${key:+"x-api-key: $key"})
  [ "$conns" -gt 1 ] && threads=2
  for entry in ${CPU_PIDS:-}; do before+=("$(cpu_ticks "${entry#*:}")"); done
  line=$(SID=$sid TOOL=$tool APIKEY=$key wrk -t$threads -c$conns -d${RUN}s --latency -s bench/http_echo.lua "$url" | grep '^RESULT')
  rps=$(echo "$line" | sed 's/.*rps=\([0-9.]*\).*/\1/')
  for entry in ${CPU_PIDS:-}; do
    cpu+=" cpu_us_per_req_${entry%%:*}=$(awk -v a="${before[$i]}" -v b="$(cpu_ticks "${entry#*:}")" -v t="$clk_tck" -v r="$rps" -v d="$RUN" 'BEGIN {printf "%.0f", (b - a) / t * 1e6 / (r * d)}')"
    i=$((i + 1))
  done
  echo "$label c=$conns $line$cpu" | tee -a "$out"
}

start_toolgate() { # UPSTREAM [header...] -> sets tg_url, tg_pid
  local port; port=$(free_port)
  "$bin" serve --listen 127.0.0.1:$port --threads "${THREADS:-1}" --upstream "$@" --log-level warn 2>>"$out_dir/toolgate.log" &
  tg_pid=$!; pids+=($tg_pid); wait_port $port; tg_url=http://127.0.0.1:$port/mcp
}

{
  echo "# $(date -u) $(uname -srm)"
  echo "# cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs) x $(nproc)"
  echo "# load before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# toolgate --threads ${THREADS:-1}"
  echo "# pairs=$PAIRS run=${RUN}s wrk=$(wrk --version 2>&1 | head -1 | cut -d' ' -f2)"
} | tee "$out"

# --- server-everything (restarted for every pair: its event store grows without bound) ---
for conns in 1 8; do
  for pair in $(seq 1 "$PAIRS"); do
    se_port=$(free_port)
    PORT=$se_port node "$peers/node/node_modules/.bin/mcp-server-everything" streamableHttp >/dev/null 2>&1 &
    se_pid=$!; pids+=($se_pid); wait_port $se_port
    start_toolgate "http://127.0.0.1:$se_port/mcp"
    if [ "$conns" = 1 ] && [ "$pair" = 1 ]; then
      echo "idle_rss_kib toolgate=$(rss_kib $tg_pid)" | tee -a "$out"
    fi
    CPU_PIDS="upstream:$se_pid" run "everything direct " "http://127.0.0.1:$se_port/mcp" echo "$conns"
    CPU_PIDS="upstream:$se_pid toolgate:$tg_pid" run "everything toolgate" "$tg_url" echo "$conns"
    [ "$conns" = 8 ] && [ "$pair" = "$PAIRS" ] && echo "loaded_rss_kib toolgate=$(rss_kib $tg_pid)" | tee -a "$out"
    kill $tg_pid $se_pid; wait $tg_pid $se_pid 2>/dev/null || true
  done
done

# --- the sandbox's Rust MCP upstream (rmcp), SANDBOX_ECHO ---
sb_port=$(free_port)
"$bin" sandbox --listen 127.0.0.1:$sb_port 2>>"$out_dir/sandbox.log" &
sb_pid=$!; pids+=($sb_pid); wait_port $sb_port
key=sk_sandbox_demo
for conns in 1 8; do
  for pair in $(seq 1 "$PAIRS"); do
    mcp_url=$(curl -sS -H "x-api-key: $key" -H 'Content-Type: application/json' \
      "http://127.0.0.1:$sb_port/api/v3.1/tool_router/session" -d '{"user_id":"bench"}' \
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["mcp"]["url"])')
    start_toolgate "$mcp_url" --header "x-api-key: $key"
    CPU_PIDS="upstream:$sb_pid" run "sandbox direct    " "$mcp_url" SANDBOX_ECHO "$conns" "$key"
    CPU_PIDS="upstream:$sb_pid toolgate:$tg_pid" run "sandbox toolgate  " "$tg_url" SANDBOX_ECHO "$conns"
    # The floor: a do-nothing TCP relay (socat) in the same place as toolgate.
    relay_port=$(free_port)
    socat TCP-LISTEN:$relay_port,bind=127.0.0.1,reuseaddr,fork,nodelay TCP:127.0.0.1:$sb_port,nodelay &
    relay_pid=$!; pids+=($relay_pid); wait_port $relay_port
    run "sandbox relay     " "${mcp_url/:$sb_port\//:$relay_port/}" SANDBOX_ECHO "$conns" "$key"
    kill $tg_pid $relay_pid; wait $tg_pid $relay_pid 2>/dev/null || true
  done
done
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out"

# --- summary: medians per (upstream, path, conns) and toolgate's added latency ---
python3 - "$out" <<'PY' | tee -a "$out"
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    m = re.match(r"(\w+) (direct|toolgate|relay)\s+c=(\d+) RESULT rps=([\d.]+) bad=(\d+) errors=(\d+) p50=(\d+) p90=(\d+) p99=(\d+)", line)
    if m:
        up, path, c, rps, bad, err, p50, p90, p99 = m.groups()
        tg = re.search(r"cpu_us_per_req_toolgate=(\d+)", line)
        rows.setdefault((up, int(c), path), []).append((float(rps), int(bad), int(err), int(p50), int(p99), int(tg.group(1)) if tg else 0))
print("summary (medians over pairs; latency in microseconds)")
print(f"{'upstream':<11}{'conns':>6}{'direct rps':>12}{'toolgate rps':>14}{'ratio':>7}{'p50 d/t':>14}{'+p50':>7}{'p99 d/t':>16}{'+p99':>7}{'bad':>5}{'tg cpu/req':>12}")
for (up, c) in sorted({(u, c) for (u, c, _) in rows}):
    d, t, r = (rows.get((up, c, path), []) for path in ("direct", "toolgate", "relay"))
    if not d or not t: continue
    med = lambda xs, i: statistics.median(x[i] for x in xs)
    bad = sum(x[1] + x[2] for x in d + t + r)
    print(f"{up:<11}{c:>6}{med(d,0):>12.0f}{med(t,0):>14.0f}{med(t,0)/med(d,0):>7.2f}"
          f"{med(d,3):>7.0f}/{med(t,3):<6.0f}{med(t,3)-med(d,3):>7.0f}{med(d,4):>8.0f}/{med(t,4):<7.0f}{med(t,4)-med(d,4):>7.0f}{bad:>5}{med(t,5):>10.0f}us"
          + (f"   socat relay: rps {med(r,0):.0f}, +p50 {med(r,3)-med(d,3):.0f}, +p99 {med(r,4)-med(d,4):.0f}" if r else ""))
PY
echo "bench: results in $out" >&2
