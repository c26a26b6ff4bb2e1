"""Per-call latency of MCP `tools/call` for the stdio benchmark (bench/stdio.sh).

usage:
  lat.py stdio N WARMUP TOOL ARGS_JSON COMMAND [ARGS...]   SDK stdio client -> COMMAND (a bridge)
  lat.py http  N WARMUP TOOL ARGS_JSON URL [Name:Value...]  lean keep-alive HTTP client -> URL
  lat.py oneshot TOOL ARGS_JSON COMMAND [ARGS...]           start, initialize, one call, exit

`stdio` and `http` print one JSON line: {"p50": ms, "p90": ms, "p99": ms, "mean": ms, "n": N}.
The `http` mode is the floor: the upstream's own round trip with as little client work as
Python allows (one persistent connection, no SDK), so `stdio - http` is what the stdio client
plus the bridge add.
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
        for _ in range(warmup):
            await session.call_tool(tool, args)
        samples = []
        for _ in range(n):
            started = time.perf_counter()
            result = await session.call_tool(tool, args)
            samples.append(time.perf_counter() - started)
            if result.is_error:
                raise SystemExit(f"tool error: {result}")
    print(json.dumps(summary(samples)), flush=True)


def http_mode(n, warmup, tool, args, url, header_args):
    parsed = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port)
    conn.connect()
    import socket

    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    base = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    for header in header_args:
        name, value = header.split(":", 1)
        base[name.strip()] = value.strip()

    def post(body, headers):
        conn.request("POST", parsed.path, body=json.dumps(body), headers=headers)
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
    samples = []
    for i in range(warmup + n):
        body = {"jsonrpc": "2.0", "id": i + 1, "method": "tools/call", "params": {"name": tool, "arguments": args}}
        started = time.perf_counter()
        response, data = post(body, headers)
        elapsed = time.perf_counter() - started
        if response.status != 200 or b'"result"' not in data:
            raise SystemExit(f"bad answer {response.status}: {data[:200]!r}")
        if i >= warmup:
            samples.append(elapsed)
    print(json.dumps(summary(samples)), flush=True)


async def oneshot_mode(tool, args, command):
    server = StdioServerParameters(command=command[0], args=command[1:], env={**os.environ})
    async with stdio_client(server) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        result = await session.call_tool(tool, args)
        if result.is_error:
            raise SystemExit(f"tool error: {result}")


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
    else:
        raise SystemExit(f"unknown mode {mode}")


main()
