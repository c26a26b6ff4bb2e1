# Helpers shared by the bench scripts; sourced by them, not run on its own.

# free_port -> a TCP port on 127.0.0.1 that nothing listens on now
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_port PORT: returns once something accepts on 127.0.0.1:PORT, polling every 50 ms at most
# WAIT_PORT_TRIES times (default 400, 20 s); fails with a message after that.
wait_port() {
  for _ in $(seq 1 "${WAIT_PORT_TRIES:-400}"); do
    (echo >/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0
    sleep 0.05
  done
  echo "port $1 never opened" >&2
  return 1
}

# rss_kib PID -> the process's resident set size, in KiB
rss_kib() { awk '/^VmRSS/ {print $2}' /proc/$1/status; }
# cpu_ticks PID -> user+system CPU time of a process, in clock ticks (clk_tck per second)
cpu_ticks() { awk '{print $14 + $15}' /proc/$1/stat; }
clk_tck=$(getconf CLK_TCK)

# mksession URL [header...] -> the session id (initialize + initialized), retried while the
# gateway is not ready (a multi-user gateway creates the user's upstream session on first use).
mksession() {
  local url=$1 sid="" tries=0; shift
  local headers=(-H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream')
  for h in "$@"; do headers+=(-H "$h"); done
  while [ -z "$sid" ]; do
    sid=$(curl -sS -D - -o /dev/null "${headers[@]}" "$url" -d '{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"0"}}}' \
      | awk 'tolower($1)=="mcp-session-id:" {print $2}' | tr -d '\r')
    tries=$((tries + 1))
    if [ -z "$sid" ]; then [ $tries -gt 100 ] && { echo "no session from $url" >&2; return 1; }; sleep 0.1; fi
  done
  curl -sS -o /dev/null "${headers[@]}" -H "Mcp-Session-Id: $sid" -H 'Mcp-Protocol-Version: 2025-11-25' "$url" -d '{"jsonrpc":"2.0","method":"notifications/initialized"}'
  echo "$sid"
}
