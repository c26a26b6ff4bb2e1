#!/usr/bin/env bash
# What toolgate's system calls per request are made of (issue 15's "≤ 7 at one connection"),
# socket by socket: `perf record` of the socket and epoll tracepoints (entry and exit, so a read
# that found nothing or a wait that timed out would show) on `toolgate serve --threads 1` in
# front of the sandbox's rmcp upstream, while bench/lat.py sends N echo calls one at a time on
# one connection (head and body in two writes, as http.client sends them; ONE_WRITE=1 for one).
#
# Prints, per request (N calls plus initialize and notifications/initialized): every system
# call; reads and writes per socket (client, upstream); reads that returned nothing (EAGAIN or
# 0) and waits that woke with no event. Upstream reads per request is how many separate bursts
# the upstream's answer arrived in: each costs one wait, one read and (unless it holds only the
# chunked end) one write, whatever the proxy does, so with no system call that finds nothing
# the count is 3 + 3 x bursts, less one per end that arrived alone.
#
# usage: bench/syscall_floor.sh TOOLGATE_BIN [N]   (not in CI; needs perf and tests/peers)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bin=$1; n=${2:-2000}
peers=${TOOLGATE_PEERS:-$root/target/peers}
py=$peers/venv/bin/python
work=$(mktemp -d)
. "$root/bench/lib.sh"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$work"' EXIT
key=sk_sandbox_demo
sb_port=$(free_port)
"$bin" sandbox --listen 127.0.0.1:$sb_port 2>/dev/null &
pids+=($!); wait_port $sb_port
url=$(curl -sS -H "x-api-key: $key" -H 'Content-Type: application/json' \
  "http://127.0.0.1:$sb_port/api/v3.1/tool_router/session" -d '{"user_id":"floor"}' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["mcp"]["url"])')
port=$(free_port)
"$bin" serve --listen 127.0.0.1:$port --threads 1 --upstream "$url" --header "x-api-key: $key" --log-level warn 2>/dev/null &
tg=$!; pids+=($tg); wait_port $port
perf record -q -o "$work/perf.data" -p $tg -e 'raw_syscalls:sys_enter,syscalls:sys_enter_recvfrom,syscalls:sys_exit_recvfrom,syscalls:sys_enter_writev,syscalls:sys_enter_epoll_wait,syscalls:sys_exit_epoll_wait' 2>/dev/null &
recorder=$!; pids+=($recorder)
sleep 1 # perf attaches before the first request
"$py" bench/lat.py http "$n" 0 SANDBOX_ECHO '{"message":"hi"}' "http://127.0.0.1:$port/mcp" >/dev/null &
client=$!
# Which socket is which: the proxy's fds (fd -> inode) and their peers (inode -> remote port),
# sampled while the calls run (the client's socket is gone once it exits).
while kill -0 $client 2>/dev/null; do
  for fd in $(ls /proc/$tg/fd); do
    link=$(readlink /proc/$tg/fd/$fd || true)
    case $link in socket:*) inode=${link#socket:[}; echo "$fd ${inode%]}" ;; esac
  done >>"$work/fds"
  tail -n +2 /proc/net/tcp >>"$work/tcp"
  sleep 0.5
done
wait $client
kill -INT $recorder; wait $recorder 2>/dev/null || true
perf script -i "$work/perf.data" 2>/dev/null >"$work/script"
python3 - "$work" "$sb_port" "$port" "$((n + 2))" <<'PY'
import collections, re, sys
work, upstream_port, own_port, requests = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
peer_of = {}
for line in open(f"{work}/tcp"):
    fields = line.split()
    local, remote, inode = int(fields[1].split(":")[1], 16), int(fields[2].split(":")[1], 16), fields[9]
    if inode != "0":
        peer_of[inode] = "upstream" if remote == upstream_port else "client" if local == own_port and remote else "listener"
kind_of = {}
for line in open(f"{work}/fds"):
    fd, inode = line.split()
    if inode in peer_of:
        kind_of[int(fd)] = peer_of[inode]
count = collections.Counter()
for line in open(f"{work}/script"):
    if "raw_syscalls:sys_enter" in line:
        count["all system calls"] += 1
    elif (m := re.search(r"sys_enter_(recvfrom|writev): fd: (0x[0-9a-f]+)", line)):
        count[f"{m.group(1)} {kind_of.get(int(m.group(2), 16), 'other')}"] += 1
    elif "sys_enter_epoll_wait" in line:
        count["epoll_wait"] += 1
    elif (m := re.search(r"sys_exit_(recvfrom|epoll_wait): (0x[0-9a-f]+)", line)):
        ret = int(m.group(2), 16)
        if ret == 0 or ret >= 1 << 63:
            count[f"{m.group(1)} that found nothing"] += 1
print(f"requests {requests}")
for name in ["all system calls", "epoll_wait", "recvfrom client", "recvfrom upstream", "writev client",
             "writev upstream", "recvfrom that found nothing", "epoll_wait that found nothing"]:
    print(f"{name:32} {count[name] / requests:.2f}")
for name, value in sorted(count.items()):
    if name.endswith(" other") and value / requests >= 0.01:
        print(f"{name:32} {value / requests:.2f}")
PY
