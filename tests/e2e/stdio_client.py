"""Drives an MCP stdio server (here `toolgate stdio`) with the Python `mcp` SDK's stdio client.

usage: stdio_client.py SCENARIO COMMAND [ARGS...]

Prints one JSON object per step on its own stdout, which the Rust test reads and asserts on.
Scenarios:
  full     list, call, progress, sampling, elicitation and roots round trips, logging
           (against server-everything)
  sandbox  list, SANDBOX_ECHO, SANDBOX_SLOW_OPERATION with progress (against the sandbox)
  restart  one call, then print {"step":"waiting"} and wait for a line on stdin (the test
           restarts the upstream meanwhile), then another call on the same session
"""

import json
import os
import sys

import anyio
import mcp.types as types
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client


def emit(**fields):
    print(json.dumps(fields), flush=True)


def texts(result):
    return [c.text for c in result.content if getattr(c, "type", None) == "text"]


async def on_sampling(context, params):
    return types.CreateMessageResult(
        role="assistant",
        content=types.TextContent(type="text", text="sampled-by-python"),
        model="python-test-model",
    )


async def on_list_roots(context):
    return types.ListRootsResult(roots=[types.Root(uri="file:///tmp/toolgate-root", name="toolgate-test-root")])


async def on_elicitation(context, params):
    return types.ElicitResult(action="accept", content={"name": "Ada Lovelace", "check": True})


async def main():
    scenario, command, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    server = StdioServerParameters(command=command, args=args, env={**os.environ})
    log_messages = []
    simulated_log = anyio.Event()

    async def on_log(params):
        log_messages.append(params.data)
        # server-everything's simulated log lines name the session.
        if "SessionId" in str(params.data):
            simulated_log.set()

    async with stdio_client(server) as (read, write), ClientSession(
        read,
        write,
        sampling_callback=on_sampling,
        elicitation_callback=on_elicitation,
        list_roots_callback=on_list_roots,
        logging_callback=on_log,
    ) as session:
        init = await session.initialize()
        emit(step="initialize", server=init.server_info.name, protocol=init.protocol_version)

        if scenario == "full":
            tools = await session.list_tools()
            emit(step="list", tools=sorted(t.name for t in tools.tools))

            echo = await session.call_tool("echo", {"message": "hello through toolgate"})
            emit(step="call", texts=texts(echo), is_error=bool(echo.is_error))

            progress = []

            async def on_progress(value, total, message):
                progress.append(value)

            long_op = await session.call_tool(
                "trigger-long-running-operation",
                {"duration": 0.6, "steps": 3},
                progress_callback=on_progress,
            )
            emit(step="progress", progress=progress, texts=texts(long_op))

            sampled = await session.call_tool("trigger-sampling-request", {"prompt": "ping", "maxTokens": 5})
            emit(step="sampling", texts=texts(sampled))

            elicited = await session.call_tool("trigger-elicitation-request", {})
            emit(step="elicitation", texts=texts(elicited))

            roots = await session.call_tool("get-roots-list", {})
            emit(step="roots", texts=texts(roots))

            # Concurrent calls: neither waits for the other.
            results = {}

            async def call(key, message):
                results[key] = texts(await session.call_tool("echo", {"message": message}))

            async with anyio.create_task_group() as group:
                for n in range(5):
                    group.start_soon(call, n, f"concurrent {n}")
            emit(step="concurrent", texts=[results[n] for n in range(5)])

            await session.set_logging_level("debug")
            await session.call_tool("toggle-simulated-logging", {})
            with anyio.fail_after(10):
                await simulated_log.wait()
            await session.call_tool("toggle-simulated-logging", {})
            emit(step="logging", messages=[m for m in log_messages if "SessionId" in str(m)][:1])

        elif scenario == "sandbox":
            tools = await session.list_tools()
            emit(step="list", tools=sorted(t.name for t in tools.tools))
            echo = await session.call_tool("SANDBOX_ECHO", {"message": "hello sandbox"})
            emit(step="call", texts=texts(echo), is_error=bool(echo.is_error))
            progress = []

            async def on_progress(value, total, message):
                progress.append(value)

            slow = await session.call_tool(
                "SANDBOX_SLOW_OPERATION", {"steps": 3, "interval_ms": 20}, progress_callback=on_progress
            )
            emit(step="progress", progress=progress, texts=texts(slow))

        elif scenario == "restart":
            before = await session.call_tool("echo", {"message": "before restart"})
            emit(step="before", texts=texts(before))
            emit(step="waiting")
            await anyio.to_thread.run_sync(sys.stdin.readline)
            after = await session.call_tool("echo", {"message": "after restart"})
            emit(step="after", texts=texts(after), is_error=bool(after.is_error))

        else:
            raise SystemExit(f"unknown scenario {scenario}")
    emit(step="closed")


anyio.run(main)
