"""Real MCP servers for tests/test_mcp.py, written with the SDK's `MCPServer` (FastMCP in mcp 1.x).

    python tests/_mcp_servers.py stdio          the tools over stdin/stdout
    python tests/_mcp_servers.py http PORT      the tools over streamable HTTP at /mcp
    python tests/_mcp_servers.py crash          writes to stderr and exits 3 before serving

Environment: `MCP_STARTS_FILE` gets one line per start and `MCP_LISTS_FILE` one per
tools/list (this process's pid); `MCP_TOKEN` is
what the `whoami` tool answers with (a secret the client passed in `env`); with `MCP_AUTH`
set, the HTTP server refuses requests whose Authorization header is not exactly it.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError


class _CountingServer(MCPServer):
    async def list_tools(self) -> Any:
        _append(os.environ.get("MCP_LISTS_FILE"))
        return await super().list_tools()


app = _CountingServer("delegate-tests")


@app.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@app.tool()
def echo(text: str) -> str:
    """Say the text back."""
    return f"echo: {text}"


@app.tool()
def fail(reason: str) -> str:
    """Always fails, with the reason."""
    raise ToolError(f"refused: {reason}")


@app.tool()
async def hang(seconds: float) -> str:
    """Sleep, then answer."""
    await anyio.sleep(seconds)
    return "woke up"


@app.tool()
def whoami() -> str:
    """The token this server was given."""
    return f"token is {os.environ.get('MCP_TOKEN', '')}"


def _append(path: str | None) -> None:
    if path:
        with open(path, "a", encoding="utf-8") as file:
            file.write(f"{os.getpid()}\n")


def _http(port: int) -> None:
    import uvicorn
    from starlette.types import ASGIApp, Receive, Scope, Send

    expected = os.environ.get("MCP_AUTH")
    inner = app.streamable_http_app()

    def guarded(asgi: ASGIApp) -> ASGIApp:
        async def check(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http" and expected is not None:
                headers = dict(scope["headers"])
                if headers.get(b"authorization", b"").decode() != expected:
                    await send({"type": "http.response.start", "status": 401, "headers": []})
                    await send({"type": "http.response.body", "body": b"unauthorized"})
                    return
            await asgi(scope, receive, send)

        return check

    uvicorn.run(guarded(inner), host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    mode = sys.argv[1]
    _append(os.environ.get("MCP_STARTS_FILE"))
    if mode == "crash":
        print(
            f"fatal: cannot load config (token {os.environ.get('MCP_TOKEN', '')})", file=sys.stderr
        )
        sys.exit(3)
    if mode == "http":
        _http(int(sys.argv[2]))
    else:
        print("test server ready", file=sys.stderr)
        app.run()
