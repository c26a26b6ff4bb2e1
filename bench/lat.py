"""Per-call latency of MCP `tools/call` for the stdio benchmark (bench/stdio.sh).

usage:
  lat.py stdio N WARMUP TOOL ARGS_JSON COMMAND [ARGS...]   SDK stdio client -> COMMAND (a bridge)
  lat.py http  N WARMUP TOOL ARGS_JSON URL [Name:Value...]  lean keep-alive HTTP client -> URL
  lat.py rawstdio N WARMUP TOOL ARGS_JSON COMMAND [ARGS...] lean stdio client (JSON lines on
                                                           pipes, no SDK) -> COMMAND
  lat.py oneshot TOOL ARGS_JSON COMMAND [ARGS...]           start, initialize, one call, exit

`stdio` and `http` print one JSON line: {"p50": ms, "p90": ms, "p99": ms, "mean": ms, "n": N}.
The `http` mode is the floor: the upstream's own round trip with as little client work as
Python allows (one persistent connection, no SDK), so `stdio - http` is what the stdio client
plus the bridge add.

CPU and memory of the process under test, over the N timed calls only (not the warm-up):
- `stdio` and `rawstdio` measure the bridge they launched (every descendant of this client): "cpu_us" per call,
  "rss_idle_kib" after initialize and "rss_loaded_kib" after the last call (summed over the
  descendants: a bridge may be a launcher plus a runtime).
- `http` measures the processes whose pids are in the environment variable CPU_PIDS
  ("name:pid" entries, space-separated): "cpu_us_NAME" per call each.
CPU time is the scheduler's nanosecond count (/proc/PID/task/*/schedstat), cross-checked with
the clock-tick count of /proc/PID/stat ("cpu_tick_us"), which also counts exited threads.
"""

import http.client
import json
import os
import statistics
import sys
import time
import urllib.parse

import anyio
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client


# Every answer must carry this text (the echo of {"message": "hi"}); EXPECT overrides it.
expect = os.environ.get("EXPECT", "Echo: hi")


def descendants(root):
    """Pids of every live descendant of `root`."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def cpu_ns(pids):
    """(scheduler ns over live threads, clock-tick ns incl. exited threads) of `pids`."""
    sched = ticks = 0
    tick_ns = 1e9 / os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    sched += int(f.read().split()[0])
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ticks += (int(fields[11]) + int(fields[12])) * tick_ns
        except (OSError, IndexError, ValueError):
            continue
    return sched, ticks


def rss_kib(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            continue
    return total


def per_call(before, after, n):
    return round((after[0] - before[0]) / n / 1000, 1), round((after[1] - before[1]) / n / 1000, 1)


def summary(samples):
    samples = sorted(samples)
    pick = lambda q: samples[min(len(samples) - 1, int(q * len(samples)))] * 1000
    return {
        "p50": round(pick(0.50), 3),
        "p90": round(pick(0.90), 3),
        "p99": round(pick(0.99), 3),
        "mean": round(statistics.fmean(samples) * 1000, 3),
        "n": len(samples),
    }


async def stdio_mode(n, warmup, tool, args, command):
    server = StdioServerParameters(command=command[0], args=command[1:], env={**os.environ})
    async with stdio_client(server) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        bridge = descendants(os.getpid())
        idle = rss_kib(bridge)
        for _ in range(warmup):
            await session.call_tool(tool, args)
        samples = []
        before = cpu_ns(bridge)
        for _ in range(n):
            started = time.perf_counter()
            result = await session.call_tool(tool, args)
            samples.append(time.perf_counter() - started)
            if result.is_error or expect not in str(result.content):
                raise SystemExit(f"bad result: {result}")
        cpu, tick = per_call(before, cpu_ns(bridge), n)
        loaded = rss_kib(bridge)
    out = summary(samples) | {"cpu_us": cpu, "cpu_tick_us": tick, "rss_idle_kib": idle,
                              "rss_loaded_kib": loaded, "procs": len(bridge)}
    print(json.dumps(out), flush=True)


class OneWriteConnection(http.client.HTTPConnection):
    """http.client sends a request's head and its body in two writes (so does httpx); wrk
    and many clients send both in one. With ONE_WRITE=1 `http` mode does that, so a proxy's
    system calls per request are not inflated by a body that arrives a moment after its head
    (one more read, a would-block read and one more epoll_wait on the proxy's side)."""

    def _send_output(self, message_body=None, encode_chunked=False):
        if isinstance(message_body, bytes):
            self._buffer.extend((b"", message_body))
            message = b"\r\n".join(self._buffer)
            del self._buffer[:]
            self.send(message)
        else:
            super()._send_output(message_body, encode_chunked)


def http_mode(n, warmup, tool, args, url, header_args):
    parsed = urllib.parse.urlparse(url)
    one_write = os.environ.get("ONE_WRITE") == "1"
    conn = (OneWriteConnection if one_write else http.client.HTTPConnection)(parsed.hostname, parsed.port)
    conn.connect()
    import socket

    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    base = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    for header in header_args:
        name, value = header.split(":", 1)
        base[name.strip()] = value.strip()

    def post(body, headers):
        conn.request("POST", parsed.path, body=json.dumps(body).encode(), headers=headers)
        response = conn.getresponse()
        data = response.read()
        return response, data

    response, _ = post(
        {"jsonrpc": "2.0", "id": 0, "method": "initialize",
         "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "lat", "version": "0"}}},
        base,
    )
    session = response.getheader("mcp-session-id")
    headers = dict(base)
    if session:
        headers["Mcp-Session-Id"] = session
    headers["MCP-Protocol-Version"] = "2025-11-25"
    post({"jsonrpc": "2.0", "method": "notifications/initialized"}, headers)
    watched = [entry.split(":", 1) for entry in os.environ.get("CPU_PIDS", "").split()]
    samples = []
    for i in range(warmup + n):
        if i == warmup:
            before = [cpu_ns([int(pid)]) for _, pid in watched]
        body = {"jsonrpc": "2.0", "id": i + 1, "method": "tools/call", "params": {"name": tool, "arguments": args}}
        started = time.perf_counter()
        response, data = post(body, headers)
        elapsed = time.perf_counter() - started
        if response.status != 200 or b'"result"' not in data or expect.encode() not in data:
            raise SystemExit(f"bad answer {response.status}: {data[:200]!r}")
        if i >= warmup:
            samples.append(elapsed)
    out = summary(samples)
    for (name, pid), start in zip(watched, before):
        out[f"cpu_us_{name}"], out[f"cpu_tick_us_{name}"] = per_call(start, cpu_ns([int(pid)]), n)
    print(json.dumps(out), flush=True)


def rawstdio_mode(n, warmup, tool, args, command):
    """The `http` mode's client loop over a bridge's stdin/stdout: same pacing, no SDK, so the
    bridge's CPU per call compares with a proxy's CPU per request under `http`."""
    import subprocess

    from jsonl import line_caller

    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    call = line_caller(proc)

    call({"jsonrpc": "2.0", "id": 0, "method": "initialize",
          "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "lat", "version": "0"}}})
    call({"jsonrpc": "2.0", "method": "notifications/initialized"})
    bridge = [proc.pid] + descendants(proc.pid)
    idle = rss_kib(bridge)
    samples = []
    for i in range(warmup + n):
        if i == warmup:
            before = cpu_ns(bridge)
        started = time.perf_counter()
        answer = call({"jsonrpc": "2.0", "id": i + 1, "method": "tools/call", "params": {"name": tool, "arguments": args}})
        elapsed = time.perf_counter() - started
        if "result" not in answer or expect not in json.dumps(answer):
            raise SystemExit(f"bad answer: {answer}")
        if i >= warmup:
            samples.append(elapsed)
    cpu, tick = per_call(before, cpu_ns(bridge), n)
    loaded = rss_kib(bridge)
    proc.stdin.close()
    proc.wait(timeout=15)
    out = summary(samples) | {"cpu_us": cpu, "cpu_tick_us": tick, "rss_idle_kib": idle,
                              "rss_loaded_kib": loaded, "procs": len(bridge)}
    print(json.dumps(out), flush=True)


async def oneshot_mode(tool, args, command):
    server = StdioServerParameters(command=command[0], args=command[1:], env={**os.environ})
    async with stdio_client(server) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        result = await session.call_tool(tool, args)
        if result.is_error or expect not in str(result.content):
            raise SystemExit(f"bad result: {result}")


def main():
    mode = sys.argv[1]
    if mode == "oneshot":
        tool, args, command = sys.argv[2], json.loads(sys.argv[3]), sys.argv[4:]
        anyio.run(oneshot_mode, tool, args, command)
        return
    n, warmup, tool, args = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], json.loads(sys.argv[5])
    rest = sys.argv[6:]
    if mode == "stdio":
        anyio.run(stdio_mode, n, warmup, tool, args, rest)
    elif mode == "http":
        http_mode(n, warmup, tool, args, rest[0], rest[1:])
    elif mode == "rawstdio":
        rawstdio_mode(n, warmup, tool, args, rest)
    else:
        raise SystemExit(f"unknown mode {mode}")


main()
