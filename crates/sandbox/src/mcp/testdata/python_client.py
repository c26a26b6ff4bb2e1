"""Drives a sandbox MCP URL with the official Python `mcp` SDK (2.x) and prints one JSON
summary line on stdout for the Rust test to assert on.

usage: python_client.py URL [HEADER:VALUE ...]
"""

import json
import sys

import anyio
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


def texts(result):
    return "".join(block.text for block in result.content if block.type == "text")


async def main():
    url = sys.argv[1]
    headers = dict(arg.split(":", 1) for arg in sys.argv[2:])
    progress = []

    async def on_progress(value, total, message):
        progress.append([value, total, message])

    summary = {}
    async with create_mcp_http_client(headers=headers) as http, streamable_http_client(
        url, http_client=http, max_sse_event_size=None
    ) as (read, write), ClientSession(read, write) as session:
        init = await session.initialize()
        summary["server"] = init.server_info.name
        summary["protocol"] = init.protocol_version
        summary["tools"] = [tool.name for tool in (await session.list_tools()).tools]
        echo = await session.call_tool("SANDBOX_ECHO", {"message": "from python"})
        summary["echo"] = [texts(echo), bool(echo.is_error)]
        bad = await session.call_tool("SANDBOX_ECHO", {})
        summary["echo_bad"] = [texts(bad), bool(bad.is_error)]
        slow = await session.call_tool(
            "SANDBOX_SLOW_OPERATION", {"steps": 4, "interval_ms": 10}, progress_callback=on_progress
        )
        summary["slow"] = texts(slow)
        summary["progress"] = progress
        large = await session.call_tool("SANDBOX_LARGE_RESULT", {"kilobytes": 2048})
        summary["large_len"] = len(texts(large))
        summary["large_ok"] = texts(large).startswith("line 00000000 ") and texts(large).endswith("\n")
        multi = await session.call_tool(
            "COMPOSIO_MULTI_EXECUTE_TOOL",
            {
                "tools": [
                    {
                        "tool_slug": "GMAIL_SEND_EMAIL",
                        "arguments": {"recipient_email": "a@example.com", "subject": "s", "body": "b"},
                    },
                    {"tool_slug": "GITHUB_STAR_A_REPOSITORY", "arguments": {"owner": "o", "repo": "r"}},
                ]
            },
        )
        summary["multi"] = json.loads(texts(multi))
        summary["multi_is_error"] = bool(multi.is_error)
    print(json.dumps(summary))


anyio.run(main)
