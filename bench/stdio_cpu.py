"""toolgate's own CPU per call, stdio face against HTTP face, same client pacing (issue 15).

usage: stdio_cpu.py ROUNDS N WARMUP BIN [BIN...]

Starts the sandbox (`BIN sandbox`, the first BIN) as the upstream and opens a tool-router
session on it; then, for ROUNDS interleaved rounds and for each BIN (e.g. a before and an after
build), drives one call at a time (send, wait for the answer, send the next):
  stdio  raw JSON lines -> `BIN stdio --upstream URL --header x-api-key:...` -> sandbox
  http   one keep-alive connection -> `BIN serve --threads 1 --upstream URL ...` -> sandbox
and reads utime+stime of the toolgate process from /proc/PID/stat before and after N calls of
SANDBOX_ECHO (after WARMUP calls). Prints one JSON line per measurement and a summary:
microseconds of toolgate CPU per call, and the stdio/http ratio per binary (target <= 1.3).
Both clients are the same few lines of Python, so client pacing is identical.
"""

import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import time

from jsonl import line_caller

KEY = "sk_sandbox_demo"
TOOL = {"name": "SANDBOX_ECHO", "arguments": {"message": "hi"}}
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port):
    for _ in range(400):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"port {port} never opened")


def start_sandbox(binary):
    port = free_port()
    proc = subprocess.Popen([binary, "sandbox", "--listen", f"127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    conn = http.client.HTTPConnection("127.0.0.1", port)
    conn.request("POST", "/api/v3.1/tool_router/session", body=json.dumps({"user_id": "cpu"}),
                 headers={"x-api-key": KEY, "Content-Type": "application/json"})
    url = json.loads(conn.getresponse().read())["mcp"]["url"]
    return proc, url


def initialize(i):
    return {"jsonrpc": "2.0", "id": i, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                       "clientInfo": {"name": "cpu", "version": "0"}}}


def stdio_run(binary, url, n, warmup):
    proc = subprocess.Popen([binary, "stdio", "--upstream", url, "--header", f"x-api-key: {KEY}",
                             "--log-level", "warn"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

    call = line_caller(proc)

    call(initialize(0))
    call({"jsonrpc": "2.0", "method": "notifications/initialized"})
    for i in range(warmup + n):
        if i == warmup:
            before = cpu_seconds(proc.pid)
        answer = call({"jsonrpc": "2.0", "id": i + 1, "method": "tools/call", "params": TOOL})
        if "result" not in answer:
            raise SystemExit(f"bad stdio answer: {answer}")
    used = cpu_seconds(proc.pid) - before
    proc.stdin.close()
    proc.wait(timeout=15)
    return used


def http_run(binary, url, n, warmup):
    port = free_port()
    proc = subprocess.Popen([binary, "serve", "--listen", f"127.0.0.1:{port}", "--threads", "1",
                             "--upstream", url, "--header", f"x-api-key: {KEY}", "--log-level", "warn"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    conn = http.client.HTTPConnection("127.0.0.1", port)
    conn.connect()
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}

    def post(message):
        conn.request("POST", "/mcp", body=json.dumps(message), headers=headers)
        response = conn.getresponse()
        return response, response.read()

    response, _ = post(initialize(0))
    session = response.getheader("mcp-session-id")
    if session:
        headers["Mcp-Session-Id"] = session
    headers["MCP-Protocol-Version"] = "2025-11-25"
    post({"jsonrpc": "2.0", "method": "notifications/initialized"})
    for i in range(warmup + n):
        if i == warmup:
            before = cpu_seconds(proc.pid)
        response, data = post({"jsonrpc": "2.0", "id": i + 1, "method": "tools/call", "params": TOOL})
        if response.status != 200 or b'"result"' not in data:
            raise SystemExit(f"bad http answer {response.status}: {data[:200]!r}")
    used = cpu_seconds(proc.pid) - before
    proc.terminate()
    proc.wait(timeout=15)
    return used


def main():
    rounds, n, warmup = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    binaries = sys.argv[4:]
    sandbox, url = start_sandbox(binaries[0])
    results = {}
    try:
        print(f"# load before: {open('/proc/loadavg').read().split()[:3]}", flush=True)
        for round_ in range(rounds):
            for binary in binaries:
                for face, run in (("stdio", stdio_run), ("http", http_run)):
                    micros = run(binary, url, n, warmup) / n * 1e6
                    results.setdefault((binary, face), []).append(micros)
                    print(json.dumps({"round": round_, "binary": binary, "face": face,
                                      "us_per_call": round(micros, 1), "n": n}), flush=True)
        print(f"# load after: {open('/proc/loadavg').read().split()[:3]}")
        print("summary: median over rounds of toolgate CPU (utime+stime) per call, microseconds")
        for binary in binaries:
            stdio = statistics.median(results[(binary, "stdio")])
            http_ = statistics.median(results[(binary, "http")])
            print(f"{binary}: stdio {stdio:.0f} us, http {http_:.0f} us, ratio {stdio / http_:.2f}")
    finally:
        sandbox.terminate()


if __name__ == "__main__":
    main()
