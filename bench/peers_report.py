"""Markdown tables from a bench/peers.sh results file (its `R ...` lines); see BENCHMARKS.md.

usage: peers_report.py bench/results/peers-STAMP.txt

Every figure is a median over the pairs (wrk) or rounds (lat.py) of one run; "added" is a
path's median minus the direct (or `http` floor) median of the same run. The load average
column gives the range seen at the start of the runs of that row.
"""

import json
import re
import statistics
import sys

med = statistics.median


def parse(path):
    rows = []
    for line in open(path):
        if not line.startswith("R "):
            continue
        head, _, tail = line[2:].partition("{")
        words = head.split()
        row = {"section": words[0]}
        for word in words[1:]:
            key, _, value = word.partition("=")
            row[key] = value
        if tail:
            row.update(json.loads("{" + tail))
        rows.append(row)
    return rows


def num(row, key):
    value = row.get(key)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def col(rows, key):
    values = [v for v in (num(r, key) for r in rows) if v is not None]
    return med(values) if values else None


def loads(rows):
    values = [num(r, "load") for r in rows if num(r, "load") is not None]
    return f"{min(values):.1f}–{max(values):.1f}" if values else "?"


def fmt(value, digits=0):
    return "–" if value is None else f"{value:.{digits}f}"


def http_tables(rows):
    runs = [r for r in rows if r["section"] == "http"]
    if not runs:
        return
    print("### HTTP → HTTP (wrk)\n")
    print("| upstream | conns | path | req/s | × direct | p50 µs | added p50 | p99 µs | added p99 | proxy CPU/req µs | bad+errors | load |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for up in ("everything", "sandbox"):
        for conns in ("1", "8"):
            group = [r for r in runs if r["upstream"] == up and r["conns"] == conns]
            direct = [r for r in group if r["path"] == "direct"]
            if not direct:
                continue
            d_rps, d50, d99 = col(direct, "rps"), col(direct, "p50"), col(direct, "p99")
            for path in ("direct", "direct-nopv", "socat", "floor", "toolgate", "toolgate-nopv", "josh"):
                sel = [r for r in group if r["path"] == path]
                if not sel:
                    continue
                rps, p50, p99 = col(sel, "rps"), col(sel, "p50"), col(sel, "p99")
                bad = sum(int(num(r, "bad") or 0) + int(num(r, "errors") or 0) for r in sel)
                print(f"| {up} | {conns} | {path} | {rps:.0f} | {rps / d_rps:.2f} | {p50:.0f} | "
                      f"{'–' if path == 'direct' else f'{p50 - d50:+.0f}'} | {p99:.0f} | "
                      f"{'–' if path == 'direct' else f'{p99 - d99:+.0f}'} | {fmt(col(sel, 'cpu_us_proxy'), 1)} | {bad} | {loads(sel)} |")
    print()
    for up in ("everything", "sandbox"):
        for conns in ("1", "8"):
            group = [r for r in runs if r["upstream"] == up and r["conns"] == conns]
            by = {p: [r for r in group if r["path"] == p] for p in ("direct", "socat", "toolgate", "josh")}
            if not all(by.values()):
                continue
            d50 = col(by["direct"], "p50")
            tg, so, jo = (col(by[p], "p50") - d50 for p in ("toolgate", "socat", "josh"))
            # josh sends no Mcp-Protocol-Version upstream; where the run has toolgate without it
            # too (server-everything), that is the like-for-like throughput comparison.
            like = [r for r in group if r["path"] == "toolgate-nopv"] or by["toolgate"]
            ratio = col(like, "rps") / col(by["josh"], "rps")
            which = " (both without Mcp-Protocol-Version upstream)" if like is not by["toolgate"] else ""
            nopv = [r for r in group if r["path"] == "direct-nopv"]
            josh_vs = ""
            if nopv:
                jo = col(by["josh"], "p50") - col(nopv, "p50")
                josh_vs = f" over direct-nopv, the upstream it sees ({col(by['josh'], 'rps') / col(nopv, 'rps'):.2f}× its throughput)"
            floor = [r for r in group if r["path"] == "floor"]
            vs_floor = f", the hyper floor {col(floor, 'p50') - d50:+.0f} µs" if floor else ""
            print(f"- {up} c{conns}: toolgate added p50 {tg:+.0f} µs vs socat {so:+.0f} µs "
                  f"({'≤ socat' if tg <= so else '> socat'}){vs_floor}; joshrotenberg mcp-proxy {jo:+.0f} µs{josh_vs}; "
                  f"toolgate/josh throughput {ratio:.2f}×{which}")
    print()


def multiuser_table(rows):
    runs = [r for r in rows if r["section"] == "multiuser"]
    if not runs:
        return
    print("### Multi-user: identity + sealed session ids (wrk, sandbox in Composio mode)\n")
    print("| conns | mode | req/s | p50 µs | added p50 vs single | p99 µs | CPU/req µs | bad+errors | load |")
    print("|---|---|---|---|---|---|---|---|---|")
    for conns in ("1", "8"):
        group = [r for r in runs if r["conns"] == conns]
        single = [r for r in group if r["path"] == "single"]
        if not single:
            continue
        s50 = col(single, "p50")
        for mode in ("single", "sealed", "tokens"):
            sel = [r for r in group if r["path"] == mode]
            if not sel:
                continue
            p50 = col(sel, "p50")
            bad = sum(int(num(r, "bad") or 0) + int(num(r, "errors") or 0) for r in sel)
            # per-pair differences too: the pairs ran interleaved, so they share their load
            pairs = sorted({r["pair"] for r in sel})
            diffs = [num(next(r for r in sel if r["pair"] == p), "p50") - num(next(r for r in single if r["pair"] == p), "p50")
                     for p in pairs if any(r["pair"] == p for r in single)]
            added = "–" if mode == "single" else f"{p50 - s50:+.0f} (pairs: {', '.join(f'{d:+.0f}' for d in diffs)})"
            print(f"| {conns} | {mode} | {col(sel, 'rps'):.0f} | {p50:.0f} | {added} | {col(sel, 'p99'):.0f} | "
                  f"{fmt(col(sel, 'cpu_us_proxy'), 1)} | {bad} | {loads(sel)} |")
    print()


def stdio_tables(rows):
    runs = [r for r in rows if r["section"] == "stdio"]
    if not runs:
        return
    print("### stdio bridges (bench/lat.py, one call at a time; milliseconds per call)\n")
    print("| upstream | path | p50 | p90 | p99 | added p50 | toolgate ÷ this (added) | bridge CPU/call µs | RSS idle / loaded MB | failed | load |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    ratios = []
    for up in ("everything", "sandbox"):
        group = [r for r in runs if r["upstream"] == up]
        ok = lambda p: [r for r in group if r["path"] == p and "p50" in r]
        base = col(ok("http"), "p50") or 0
        tg_added = (col(ok("toolgate"), "p50") or 0) - base
        for path in ("http", "toolgate-http", "toolgate", "toolgate-raw", "mcp-remote", "supergateway", "sparfenyuk", "stdio-direct"):
            sel = ok(path)
            failed = sum(1 for r in group if r["path"] == path and "p50" not in r)
            if not sel and not failed:
                continue
            if not sel:
                print(f"| {up} | {path} | – | – | – | – | – | – | – | {failed} | |")
                continue
            p50 = col(sel, "p50")
            added = p50 - base
            share = f"{tg_added / added:.2f}" if path in ("mcp-remote", "supergateway", "sparfenyuk") and added > 0 else "–"
            cpu = col(sel, "cpu_us") if path not in ("http", "toolgate-http") else col(sel, "cpu_us_toolgate")
            rss = "–"
            if col(sel, "rss_idle_kib"):
                rss = f"{col(sel, 'rss_idle_kib') / 1024:.1f} / {col(sel, 'rss_loaded_kib') / 1024:.1f}"
            print(f"| {up} | {path} | {p50:.2f} | {col(sel, 'p90'):.2f} | {col(sel, 'p99'):.2f} | "
                  f"{'–' if path == 'http' else f'{added:.2f}'} | {share} | {fmt(cpu, 0)} | {rss} | {failed} | {loads(sel)} |")
        raw_cpu, sdk_cpu = col(ok("toolgate-raw"), "cpu_us"), col(ok("toolgate"), "cpu_us")
        http_cpu = col(ok("toolgate-http"), "cpu_us_toolgate")
        if raw_cpu and http_cpu:
            ratios.append((up, raw_cpu, sdk_cpu, http_cpu))
    print()
    for up, raw_cpu, sdk_cpu, http_cpu in ratios:
        sdk = f"; with the SDK's slower stdio client {sdk_cpu:.0f} µs ({sdk_cpu / http_cpu:.2f}, not the same pacing)" if sdk_cpu else ""
        print(f"- {up}: toolgate stdio {raw_cpu:.0f} µs CPU per call, toolgate serve {http_cpu:.0f} µs per request "
              f"(the same lean client loop, one call at a time): ratio {raw_cpu / http_cpu:.2f} (target ≤ 1.3){sdk}")
    print()


def syscall_table(rows):
    runs = [r for r in rows if r["section"] == "syscalls"]
    if not runs:
        return
    print("### System calls per request (one connection, lat.py http, one call at a time)\n")
    print("`client=split`: head and body in two writes (http.client, httpx); `client=one-write`: one "
          "write per request (wrk). `counter=perf`: `perf stat` of the syscall tracepoints (does not "
          "slow the process); `counter=strace`: `strace -f -c` (slows every call, so more of what "
          "the upstream sends arrives together).\n")
    print("| proxy | client | counter | requests | syscalls/request | main calls per request | load |")
    print("|---|---|---|---|---|---|---|")
    fixed = ("section", "path", "client", "counter", "requests", "load", "per_request")
    for r in runs:
        detail = " ".join(f"{k} {v}" for k, v in r.items() if k not in fixed)
        print(f"| {r['path']} | {r.get('client', 'split')} | {r.get('counter', 'strace')} | {r['requests']} | "
              f"{r['per_request']} | {detail} | {r['load']} |")
    print()


def oneshot_table(rows):
    runs = {r["path"]: r for r in rows if r["section"] == "oneshot"}
    if not runs:
        return
    print("### One-shot: start → initialize → call → exit (hyperfine, server-everything)\n")
    print("| bridge | mean ms | median ms | σ ms | runs | toolgate faster by | load |")
    print("|---|---|---|---|---|---|---|")
    tg = num(runs.get("toolgate", {}), "mean_ms")
    for path, r in runs.items():
        faster = "–" if path == "toolgate" or not tg else f"{num(r, 'mean_ms') / tg:.2f}×"
        print(f"| {path} | {r['mean_ms']} | {r['median_ms']} | {r['sd_ms']} | {r['runs']} | {faster} | {r['load']} |")
    print()


def rss_table(rows):
    runs = [r for r in rows if r["section"] == "rss"]
    if not runs:
        return
    print("### RSS of the HTTP proxies (MB; idle after start, loaded after the last 8-connection run)\n")
    print("| upstream | when | process | RSS MB |")
    print("|---|---|---|---|")
    for r in runs:
        for key, value in r.items():
            if key not in ("section", "upstream", "when"):
                print(f"| {r['upstream']} | {r['when']} | {key} | {int(value) / 1024:.1f} |")
    print()


def main():
    path = sys.argv[1]
    for line in open(path):
        if line.startswith("# ") and not line.startswith("# http") and ":" in line:
            if re.match(r"# (load|commit|main|cpu|peers|sections|\w{3} )", line):
                print(line.rstrip() + "  ")
    print()
    rows = parse(path)
    http_tables(rows)
    multiuser_table(rows)
    stdio_tables(rows)
    syscall_table(rows)
    oneshot_table(rows)
    rss_table(rows)


main()
