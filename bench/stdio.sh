#!/usr/bin/env bash
# stdio benchmark of `toolgate stdio` against mcp-remote 0.15.1 (see BENCHMARKS.md, "stdio").
#
# Per-call latency: ROUNDS interleaved rounds; in each, bench/lat.py makes WARMUP then N
# sequential tools/call echo over one session on three paths to the same upstream:
#   http      lean keep-alive HTTP client -> upstream            (the floor: the upstream itself)
#   toolgate  Python SDK stdio client -> toolgate stdio -> upstream
#   mcp-remote  Python SDK stdio client -> mcp-remote -> upstream
# plus, for server-everything, stdio-direct (SDK stdio client -> server-everything's own stdio
# transport): the client and server cost with no bridge and no HTTP, for reference.
# "added" = path p50 - http p50 (it includes the SDK's own stdio cost, the same for both
# bridges, so the toolgate/mcp-remote ratio of added latency is conservative).
# Upstreams: server-everything (restarted per round: its event store grows without bound) and
# the sandbox's Rust MCP upstream (SANDBOX_ECHO).
# One-shot: hyperfine, start -> initialize -> one call -> exit, both bridges.
# Not part of CI. Run it on a quiet machine (check `uptime`).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
ROUNDS=${ROUNDS:-3}
N=${N:-500}
WARMUP=${WARMUP:-20}
peers=${TOOLGATE_PEERS:-$root/target/peers}
py=$peers/venv/bin/python
remote=$peers/node/node_modules/.bin/mcp-remote
out_dir=$root/bench/results
mkdir -p "$out_dir"
out=$out_dir/stdio-$(date -u +%Y%m%dT%H%M%SZ).txt

if ! command -v hyperfine >/dev/null; then
  echo "bench: installing hyperfine (apt)" >&2
  apt-get install -y hyperfine >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y hyperfine >/dev/null; }
fi
[ -x "$remote" ] && [ -x "$py" ] || bash tests/peers/install.sh
echo "bench: building the release binary" >&2
cargo build --release -p toolgate --locked >&2
bin=$root/target/release/toolgate

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# Ports get 10 s to open here (200 tries of 50 ms), as before the helpers were shared.
WAIT_PORT_TRIES=200
. "$root/bench/lib.sh"

{
  echo "# $(date -u) $(uname -srm)"
  echo "# cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs) x $(nproc)"
  echo "# load before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# rounds=$ROUNDS n=$N warmup=$WARMUP mcp-remote=$(node -p "require('$peers/node/node_modules/mcp-remote/package.json').version") node=$(node --version)"
} | tee "$out"

# measure LABEL UPSTREAM_NAME TOOL ARGS URL [header]
measure() {
  local up=$1 tool=$2 args=$3 url=$4 header=${5:-} line
  local hflag=() rflag=()
  if [ -n "$header" ]; then hflag=(--header "$header"); rflag=(--header "$header"); fi
  line=$("$py" bench/lat.py http "$N" "$WARMUP" "$tool" "$args" "$url" ${header:+"$header"})
  echo "$up http       $line" | tee -a "$out"
  line=$("$py" bench/lat.py stdio "$N" "$WARMUP" "$tool" "$args" "$bin" stdio --upstream "$url" "${hflag[@]}" 2>>"$out_dir/toolgate-stdio.log")
  echo "$up toolgate   $line" | tee -a "$out"
  line=$("$py" bench/lat.py stdio "$N" "$WARMUP" "$tool" "$args" node "$remote" "$url" "${rflag[@]}" 2>>"$out_dir/mcp-remote.log")
  echo "$up mcp-remote $line" | tee -a "$out"
}

for round in $(seq 1 "$ROUNDS"); do
  se_port=$(free_port)
  PORT=$se_port node "$peers/node/node_modules/.bin/mcp-server-everything" streamableHttp >/dev/null 2>&1 &
  se_pid=$!; pids+=($se_pid); wait_port $se_port
  measure everything echo '{"message":"hi"}' "http://127.0.0.1:$se_port/mcp"
  # Reference: the SDK's stdio client talking to server-everything's own stdio transport (no
  # HTTP, no bridge): what the client side and the server cost without any bridge.
  line=$("$py" bench/lat.py stdio "$N" "$WARMUP" echo '{"message":"hi"}' node "$peers/node/node_modules/.bin/mcp-server-everything" stdio 2>/dev/null)
  echo "everything stdio-direct $line" | tee -a "$out"
  kill $se_pid; wait $se_pid 2>/dev/null || true
done

sb_port=$(free_port)
"$bin" sandbox --listen 127.0.0.1:$sb_port 2>>"$out_dir/sandbox.log" &
sb_pid=$!; pids+=($sb_pid); wait_port $sb_port
key=sk_sandbox_demo
for round in $(seq 1 "$ROUNDS"); do
  mcp_url=$(curl -sS -H "x-api-key: $key" -H 'Content-Type: application/json' \
    "http://127.0.0.1:$sb_port/api/v3.1/tool_router/session" -d '{"user_id":"bench"}' \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["mcp"]["url"])')
  measure sandbox SANDBOX_ECHO '{"message":"hi"}' "$mcp_url" "x-api-key: $key"
done

# One-shot, against a fresh server-everything.
se_port=$(free_port)
PORT=$se_port node "$peers/node/node_modules/.bin/mcp-server-everything" streamableHttp >/dev/null 2>&1 &
se_pid=$!; pids+=($se_pid); wait_port $se_port
se_url=http://127.0.0.1:$se_port/mcp
hyperfine -N -w 2 -r "${ONESHOT_RUNS:-15}" --export-json "$out_dir/oneshot.json" \
  -n toolgate "$py bench/lat.py oneshot echo '{\"message\":\"hi\"}' $bin stdio --upstream $se_url" \
  -n mcp-remote "$py bench/lat.py oneshot echo '{\"message\":\"hi\"}' node $remote $se_url" 2>&1 | tee -a "$out"
python3 - "$out_dir/oneshot.json" <<'PY' | tee -a "$out"
import json, sys
for r in json.load(open(sys.argv[1]))["results"]:
    print(f"ONESHOT {r['command']:<11} mean={r['mean']*1000:.0f}ms median={r['median']*1000:.0f}ms sd={r['stddev']*1000:.0f}ms")
PY
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out"

python3 - "$out" <<'PY' | tee -a "$out"
import json, re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    m = re.match(r"(\w+) (http|toolgate|mcp-remote|stdio-direct)\s+(\{.*\})", line)
    if m:
        rows.setdefault((m.group(1), m.group(2)), []).append(json.loads(m.group(3)))
print("summary: medians over rounds, milliseconds; added = path - http")
print(f"{'upstream':<11}{'path':<11}{'p50':>8}{'p90':>8}{'p99':>8}{'added p50':>11}")
for up in sorted({u for (u, _) in rows}):
    base = statistics.median(r["p50"] for r in rows.get((up, "http"), [{"p50": 0}]))
    added = {}
    for path in ("http", "toolgate", "mcp-remote", "stdio-direct"):
        rs = rows.get((up, path))
        if not rs: continue
        med = {k: statistics.median(r[k] for r in rs) for k in ("p50", "p90", "p99")}
        added[path] = med["p50"] - base
        print(f"{up:<11}{path:<11}{med['p50']:>8.2f}{med['p90']:>8.2f}{med['p99']:>8.2f}{added[path]:>11.2f}")
    if added.get("mcp-remote"):
        print(f"{up:<11}toolgate adds {added['toolgate'] / added['mcp-remote']:.2f}x of what mcp-remote adds (target <= 0.33)")
PY
echo "bench: results in $out" >&2
