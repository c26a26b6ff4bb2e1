#!/usr/bin/env bash
# Measures the resident memory and CPU of a toolgate binary, idle and under a short load on
# loopback, to size the Kubernetes requests/limits in deploy/k8s (numbers go in
# deploy/README.md). Not part of the test suite: the numbers depend on the machine.
#
#   [MODE=composio|generic] tests/deploy/measure.sh [BINARY]   (default: target/release/toolgate)
#
# composio (default): `toolgate serve` configured by environment only, as in the container,
# against `toolgate sandbox` (the Composio stand-in, whose MCP upstream serves SANDBOX_ECHO).
# generic: `toolgate serve --upstream` in front of the pinned server-everything
# (tests/peers/install.sh). Load: wrk (apt), bounded to 10 s per phase, unique JSON-RPC ids,
# every answer checked, 127.0.0.1 only. Every process it starts is stopped on exit.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${1:-$root/target/release/toolgate}
peers=${TOOLGATE_PEERS:-$root/target/peers}
everything=$peers/node/node_modules/.bin/mcp-server-everything
for need in "$bin" "$everything"; do
  [ -x "$need" ] || { echo "measure: missing $need (build it / run tests/peers/install.sh)" >&2; exit 1; }
done
command -v wrk >/dev/null || { echo "measure: wrk is missing (apt-get install wrk)" >&2; exit 1; }
work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "measure: nothing listens on port $1" >&2; return 1
}
rss_kib() { awk '/^VmRSS/{print $2}' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM/{print $2}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

mode=${MODE:-composio}
gw=$(free_port)
case "$mode" in
  composio)
    tool=SANDBOX_ECHO
    up=$(free_port)
    "$bin" sandbox --listen "127.0.0.1:$up" 2>"$work/upstream.log" &
    pids+=($!)
    wait_port "$up"
    env -i PATH="$PATH" COMPOSIO_API_KEY=sk_sandbox_demo COMPOSIO_BASE_URL="http://127.0.0.1:$up" \
      TOOLGATE_USER_ID=measure TOOLGATE_LISTEN="127.0.0.1:$gw" TOOLGATE_LOG_FORMAT=json \
      "$bin" serve 2>"$work/toolgate.log" &
    ;;
  generic)
    tool=echo
    up=$(free_port)
    PORT=$up "$everything" streamableHttp >/dev/null 2>"$work/upstream.log" &
    pids+=($!)
    wait_port "$up"
    "$bin" serve --upstream "http://127.0.0.1:$up/mcp" --listen "127.0.0.1:$gw" 2>"$work/toolgate.log" &
    ;;
  *) echo "measure: MODE must be composio or generic" >&2; exit 1 ;;
esac
gw_pid=$!
pids+=($gw_pid)
wait_port "$gw"
if [ "$mode" = composio ]; then
  # Ready = the Composio session exists (generic mode is ready once it listens).
  for _ in $(seq 1 200); do
    curl -fsS -o /dev/null "http://127.0.0.1:$gw/readyz" 2>/dev/null && break
    sleep 0.05
  done
  curl -fsS -o /dev/null "http://127.0.0.1:$gw/readyz" \
    || { echo "measure: toolgate not ready" >&2; cat "$work/toolgate.log" >&2; exit 1; }
fi
url="http://127.0.0.1:$gw/mcp"

sleep 10
echo "mode $mode; idle after 10 s: rss=$(rss_kib $gw_pid) KiB cpu_ticks=$(cpu_ticks $gw_pid) (hz $hz)"

sid=$(curl -sS -D - -o /dev/null -H 'Content-Type: application/json' \
  -H 'Accept: application/json, text/event-stream' "$url" \
  -d '{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"measure","version":"0"}}}' \
  | awk 'tolower($1)=="mcp-session-id:"{print $2}' | tr -d '\r')
curl -sS -o /dev/null -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
  -H "Mcp-Session-Id: $sid" "$url" -d '{"jsonrpc":"2.0","method":"notifications/initialized"}'

cat >"$work/echo.lua" <<'LUA'
local threads, count = {}, 0
function setup(thread) count = count + 1; thread:set("me", count); table.insert(threads, thread) end
function init(args)
  n, bad, tool = 0, 0, os.getenv("TOOL")
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Accept"] = "application/json, text/event-stream"
  wrk.headers["Mcp-Protocol-Version"] = "2025-11-25"
  wrk.headers["Mcp-Session-Id"] = os.getenv("SID")
end
function request()
  n = n + 1
  return wrk.format(nil, nil, nil, string.format(
    '{"jsonrpc":"2.0","id":"%s-%d","method":"tools/call","params":{"name":"%s","arguments":{"message":"hi"}}}', tostring(me), n, tool))
end
function response(status, headers, body)
  if status ~= 200 or not string.find(body, "Echo: hi", 1, true) then bad = bad + 1 end
end
function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do total = total + thread:get("bad") end
  io.write(string.format("bad_responses=%d p50_us=%d p99_us=%d\n", total, latency:percentile(50), latency:percentile(99)))
end
LUA

for conns in 1 8 64; do
  before=$(cpu_ticks $gw_pid)
  start=$(date +%s.%N)
  TOOL=$tool SID=$sid wrk -t$(( conns < 2 ? 1 : 2 )) -c$conns -d10s -s "$work/echo.lua" "$url" >"$work/wrk.txt"
  end=$(date +%s.%N)
  after=$(cpu_ticks $gw_pid)
  rps=$(awk '/Requests\/sec/{print $2}' "$work/wrk.txt")
  errors=$(grep -E 'bad_responses|Non-2xx|Socket errors' "$work/wrk.txt" | tr '\n' ' ')
  cores=$(awk -v t=$((after - before)) -v hz="$hz" -v s="$start" -v e="$end" 'BEGIN{printf "%.3f", t/hz/(e-s)}')
  echo "load c=$conns: ${rps} req/s, toolgate cpu=${cores} cores, rss=$(rss_kib $gw_pid) KiB, peak rss=$(hwm_kib $gw_pid) KiB ${errors}"
done
sleep 5
echo "after load + 5 s: rss=$(rss_kib $gw_pid) KiB peak=$(hwm_kib $gw_pid) KiB"
