"""Tools from MCP servers: stdio commands and streamable HTTP endpoints, next to Python tools.

An MCP server is given to an agent like a function::

    github = MCPServerStdio("npx", ["-y", "@modelcontextprotocol/server-github"],
                            env={"GITHUB_TOKEN": token}, prefix="gh_", tools=["search_issues"])
    docs = MCPServerHTTP("http://127.0.0.1:8000/mcp", headers_env={"Authorization": "DOCS_AUTH"})
    agent = Agent("w", "openai/gpt-4o-mini", tools=[my_function, github, docs])

The server's tools become `MCPTool`s — `Tool`s whose name, description and JSON Schema come from
the server and whose `call` asks the server — so the agent loop treats them as it treats Python
tools: the definitions go in each request (and the budget counts their tokens), the model's
arguments are sent as they are (the server validates them), and whatever goes wrong comes back as
an `"Error: ..."` string the model can read.

Lifecycle: a server starts at most once per run and is listed once per start. Each server runs
in a task of its own (the SDK's clients hold anyio task groups, which must be entered and left
by one task) inside a run-scoped pool, `mcp_servers_open()`: the orchestrator opens one around
every run (a resume is a new run: the server starts again), and stops the servers when the run
ends. `await agent.run(...)` outside a run opens one for that call. `async with server:` holds a
server open across runs.

Secrets: the values of a stdio server's `env` and every header value are registered with
`delegate._secrets`, so they never reach a log, an event, a stored row or the CLI's output;
a server's stderr goes to a temporary file, and only its (masked) tail is shown, when the
server fails to start.
"""

from __future__ import annotations

import abc
import contextlib
import json
import math
import os
import re
import shlex
import tempfile
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextvars import ContextVar
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TextIO

import anyio

from delegate import _secrets
from delegate._log import get_logger
from delegate.agents.models import ToolDefinition
from delegate.agents.tools import Tool, arguments_object
from delegate.errors import ConfigError, MCPServerError, did_you_mean

if TYPE_CHECKING:
    from anyio.abc import TaskGroup
    from mcp import Client
    from mcp.client import Transport
    from mcp.types import CallToolResult
    from mcp.types import Tool as ListedTool

__all__ = [
    "MCPServer",
    "MCPServerHTTP",
    "MCPServerStdio",
    "MCPTool",
    "mcp_servers_open",
    "mcp_tools",
    "needs_mcp_pool",
]

log = get_logger("delegate.mcp")

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
_PREFIX = re.compile(r"^[A-Za-z0-9_-]{0,32}$")
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_MAX_PAGES = 100  # tools/list pages per start: a hostile server cannot page forever
_MAX_TOOLS = 1000
_STDERR_TAIL = 2000  # characters of a failed server's stderr shown in the error


class MCPServer(abc.ABC):
    """What `MCPServerStdio` and `MCPServerHTTP` share: the tools offered and how calls are cut.

    Not built directly. `async with server:` starts it and keeps it running (and listed) until
    the block ends, across any runs inside; otherwise each run starts it when a task first needs
    it and stops it when the run ends.

    Attributes:
        name: names the server in messages, logs and workflow files.
        tools: the allow-list: only these of the server's tools are offered (None: all).
        prefix: put before each tool's name, so two servers' `search` can be told apart.
        timeout: seconds for each call (a run's deadline cuts it shorter).
        start_timeout: seconds for starting and listing.
        requires_approval: True for every tool, or the tools (the server's names) whose calls
            wait for a person's approval.
    """

    __slots__ = (
        "_held",
        "_root",
        "name",
        "prefix",
        "requires_approval",
        "start_timeout",
        "timeout",
        "tools",
    )

    name: str
    tools: frozenset[str] | None
    prefix: str
    timeout: float
    start_timeout: float
    requires_approval: bool | frozenset[str]

    def __init__(
        self,
        *,
        name: str,
        tools: Iterable[str] | None,
        prefix: str,
        timeout: float,
        start_timeout: float,
        requires_approval: bool | Iterable[str],
    ) -> None:
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(
                f"MCP server name {name!r} is not valid; use letters, digits, '_', '-' or '.', "
                "e.g. name='github'"
            )
        self.name = name
        where = f"MCP server {name!r}: "
        self.tools = None if tools is None else _names(where, "tools", tools)
        if not isinstance(prefix, str) or not _PREFIX.match(prefix):
            raise ConfigError(
                f"{where}prefix {prefix!r} is not valid; use up to 32 letters, digits, '_' or "
                "'-', e.g. prefix='github_'"
            )
        self.prefix = prefix
        self.timeout = _seconds(where, "timeout", timeout)
        self.start_timeout = _seconds(where, "start_timeout", start_timeout)
        if isinstance(requires_approval, bool):
            self.requires_approval: bool | frozenset[str] = requires_approval
        else:
            self.requires_approval = _names(where, "requires_approval", requires_approval)
        self._root: MCPServer = self
        self._held: _Pool | None = None

    @abc.abstractmethod
    def describe(self) -> str:
        """How the server is reached, for messages: its command line or its URL (masked)."""

    def with_tools(self, tools: Iterable[str]) -> Self:
        """This server offering only `tools` (its own names): a view that shares the server's
        process or connection in a run, so agents can be given different tools of one server.

        Raises:
            ConfigError: `tools` is empty or not a list of names, or names a tool outside this
                server's own allow-list.
        """
        where = f"MCP server {self.name!r}: "
        names = _names(where, "with_tools()", tools)
        outside = sorted(names - self.tools) if self.tools is not None else []
        if outside:
            raise ConfigError(
                f"{where}with_tools() names {', '.join(map(repr, outside))}, which the server's "
                f"tools= allow-list leaves out; add them there"
            )
        view = self._copy()
        view.tools = names
        view._root = self._root
        return view

    def _copy(self) -> Self:
        view = object.__new__(type(self))
        for cls in type(self).__mro__:
            for slot in getattr(cls, "__slots__", ()):
                if hasattr(self, slot):
                    object.__setattr__(view, slot, getattr(self, slot))
        return view

    @abc.abstractmethod
    def _transport(self, errlog: TextIO) -> tuple[Transport, list[Any]]:
        """The SDK transport to enter, and the async context managers to enter before it."""

    def _needs_errlog(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, {self.describe()})"

    async def __aenter__(self) -> Self:
        root = self._root
        if root._held is not None:
            raise ConfigError(
                f"MCP server {root.name!r} is already held open by an `async with`; enter it once"
            )
        pool = _Pool(None)
        await pool.__aenter__()
        try:
            await pool.connect(root)
        except BaseException as exc:
            await pool.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        root._held = pool
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        root = self._root
        pool, root._held = root._held, None
        if pool is not None:
            await pool.__aexit__(*exc_info)


class MCPServerStdio(MCPServer):
    """An MCP server run as a command, spoken to over its stdin and stdout.

    Args:
        command: the program, e.g. "npx", "uvx" or `sys.executable`.
        args: its arguments.
        env: environment variables for it, on top of a few safe ones (PATH, HOME, ...): the
            host's other variables, its API keys among them, are not passed. Every value is
            masked from logs, events and stored rows from now on.
        cwd: the folder it runs in; default: the current one.
        name: names it in messages; default: the command's file name.
        tools: only these of its tools are offered (its names); default: all.
        prefix: put before each tool's name the model sees, e.g. "github_".
        timeout: seconds for each call (a run's deadline cuts it shorter). Default: 30.
        start_timeout: seconds to start and list it. Default: 60.
        requires_approval: True, or the names of the tools whose calls wait for approval.

    Raises:
        ConfigError: an argument has the wrong type or value.
    """

    __slots__ = ("args", "command", "cwd", "env")

    def __init__(
        self,
        command: str,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
        *,
        name: str | None = None,
        tools: Iterable[str] | None = None,
        prefix: str = "",
        timeout: float = 30.0,
        start_timeout: float = 60.0,
        requires_approval: bool | Iterable[str] = False,
    ) -> None:
        if not isinstance(command, str) or not command.strip():
            raise ConfigError(
                f"MCPServerStdio: command must be a program to run, got {command!r}; e.g. "
                "MCPServerStdio('uvx', ['mcp-server-fetch'])"
            )
        if isinstance(args, str) or not all(isinstance(a, str) for a in args):
            raise ConfigError(
                f"MCPServerStdio {command!r}: args must be a list of str, got {args!r}"
            )
        if env is not None and not (
            isinstance(env, Mapping)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())
        ):
            raise ConfigError(
                f"MCPServerStdio {command!r}: env must map variable names to str values"
            )
        if cwd is not None and not isinstance(cwd, str | Path):
            raise ConfigError(f"MCPServerStdio {command!r}: cwd must be a path, got {cwd!r}")
        self.command = command
        self.args = tuple(args)
        self.env = dict(env or {})
        _secrets.register(*self.env.values())
        self.cwd = None if cwd is None else Path(cwd)
        super().__init__(
            name=name if name is not None else _default_name(Path(command).name),
            tools=tools,
            prefix=prefix,
            timeout=timeout,
            start_timeout=start_timeout,
            requires_approval=requires_approval,
        )

    def describe(self) -> str:
        return "command " + _secrets.redact(shlex.join([self.command, *self.args]))

    def _needs_errlog(self) -> bool:
        return True

    def _transport(self, errlog: TextIO) -> tuple[Transport, list[Any]]:
        from mcp import StdioServerParameters, stdio_client

        parameters = StdioServerParameters(
            command=self.command, args=list(self.args), env=self.env or None, cwd=self.cwd
        )
        return stdio_client(parameters, errlog=errlog), []


class MCPServerHTTP(MCPServer):
    """An MCP server reached over streamable HTTP.

    Args:
        url: its endpoint, e.g. "http://127.0.0.1:8000/mcp".
        headers_env: headers read from environment variables when the server is started, e.g.
            `{"Authorization": "DOCS_AUTH"}` (the variable holds the whole value, "Bearer ...").
        headers: headers given as they are. Every header value is masked from logs, events and
            stored rows.
        name: names it in messages; default: the URL's host.
        tools: only these of its tools are offered; default: all.
        prefix: put before each tool's name the model sees.
        timeout: seconds for each call (a run's deadline cuts it shorter). Default: 30.
        start_timeout: seconds to connect and list it. Default: 60.
        requires_approval: True, or the names of the tools whose calls wait for approval.

    Raises:
        ConfigError: an argument has the wrong type or value.
    """

    __slots__ = ("headers", "headers_env", "url")

    def __init__(
        self,
        url: str,
        *,
        headers_env: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        name: str | None = None,
        tools: Iterable[str] | None = None,
        prefix: str = "",
        timeout: float = 30.0,
        start_timeout: float = 60.0,
        requires_approval: bool | Iterable[str] = False,
    ) -> None:
        parsed = urllib.parse.urlsplit(url) if isinstance(url, str) else None
        if parsed is None or parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ConfigError(
                f"MCPServerHTTP: url must be an http(s) URL, got {url!r}; e.g. "
                "MCPServerHTTP('http://127.0.0.1:8000/mcp')"
            )
        _secrets.register_url(url)
        for key, value in (("headers", headers), ("headers_env", headers_env)):
            if value is not None and not (
                isinstance(value, Mapping)
                and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
            ):
                raise ConfigError(f"MCPServerHTTP {url!r}: {key} must map header names to str")
        self.url = url
        self.headers = dict(headers or {})
        _secrets.register(*self.headers.values())
        self.headers_env = dict(headers_env or {})
        super().__init__(
            name=name if name is not None else _default_name(parsed.hostname),
            tools=tools,
            prefix=prefix,
            timeout=timeout,
            start_timeout=start_timeout,
            requires_approval=requires_approval,
        )

    def describe(self) -> str:
        return "URL " + _secrets.redact(self.url)

    def _transport(self, errlog: TextIO) -> tuple[Transport, list[Any]]:
        import httpx2
        from mcp.client.streamable_http import streamable_http_client

        headers = dict(self.headers)
        for header, variable in self.headers_env.items():
            value = os.environ.get(variable)
            if value is None:
                raise MCPServerError(
                    f"MCP server {self.name!r} ({self.describe()}): header {header!r} is to be "
                    f"read from ${variable}, which is not set; export it",
                    server=self.name,
                )
            _secrets.register(value)
            headers[header] = value
        # The SDK's own defaults: 30 s to connect and write, 5 minutes to read a stream.
        client = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0, read=300.0))
        return streamable_http_client(self.url, http_client=client), [client]


class MCPTool(Tool):
    """A tool of an MCP server, as the agent loop sees it: its definition is the server's, and
    `call` sends the model's arguments to the server.

    Built by delegate when a server is listed; `server` and `remote_name` say where it is from.
    """

    __slots__ = ("_connection", "remote_name", "server")

    server: MCPServer
    remote_name: str

    def __init__(self, server: MCPServer, listed: ListedTool, connection: _Connection) -> None:
        # Not Tool.__init__: there is no Python function to read a signature from.
        self.server = server
        self.remote_name = listed.name
        self._connection = connection
        self.fn = self.call
        self.name = server.prefix + listed.name
        self.description = " ".join((listed.description or listed.title or "").split())
        self.definition = ToolDefinition(
            name=self.name, description=self.description, parameters=dict(listed.input_schema)
        )
        approval = server.requires_approval
        self.requires_approval = approval if isinstance(approval, bool) else listed.name in approval

    def __repr__(self) -> str:
        return f"MCPTool(name={self.name!r}, server={self.server.name!r})"

    async def call(self, arguments: str) -> str:
        """Ask the server to run the tool with the model's JSON `arguments`; return what the
        model reads: the result's text (its structured content as JSON when it has no text);
        `"Error: ..."`
        for bad JSON, a tool error, a call cut by the timeout or the run's deadline, or a server
        that failed. Cancellation propagates."""
        raw = arguments_object(self.name, arguments)
        if isinstance(raw, str):
            return raw
        seconds, cut_by = self._connection.limit(self.server.timeout)
        if seconds <= 0:
            return f"Error: tool {self.name!r} was not called: the run's deadline has passed"
        with anyio.move_on_after(seconds) as scope:
            try:
                result = await self._connection.call(self.remote_name, raw)
            except Exception as exc:  # the server failed or went away: the model is told
                error = _describe(exc)
                log.warning("mcp_tool_failed", tool=self.name, server=self.server.name, error=error)
                return (
                    f"Error: MCP server {self.server.name!r} failed on tool {self.name!r}: {error}"
                )
        if scope.cancelled_caught:
            log.warning(
                "mcp_tool_timeout", tool=self.name, server=self.server.name, seconds=seconds
            )
            return (
                f"Error: tool {self.name!r} did not answer within {seconds:.3g} s ({cut_by}); "
                "try other arguments or answer without it"
            )
        return _secrets.redact(_render(result))


class _Connection:
    """One started server: its session, its listing, and the task that keeps it open."""

    def __init__(self, server: MCPServer, deadline: Callable[[], float | None] | None) -> None:
        self.server = server
        self.deadline = deadline
        self.ready = anyio.Event()
        self.stop = anyio.Event()
        self.client: Client | None = None
        self.listed: list[ListedTool] = []
        self.error: MCPServerError | ConfigError | None = None
        self.views: dict[MCPServer, tuple[MCPTool, ...]] = {}

    def limit(self, seconds: float, key: str = "timeout") -> tuple[float, str]:
        """Seconds a step may take: `seconds`, or what is left before the run's deadline; and
        which of them it is."""
        deadline = self.deadline() if self.deadline is not None else None
        if deadline is not None and deadline - anyio.current_time() < seconds:
            return deadline - anyio.current_time(), "the run's deadline"
        return seconds, f"the {key} of MCP server {self.server.name!r}"

    async def call(self, name: str, arguments: dict[str, Any]) -> CallToolResult:
        if self.client is None or self.stop.is_set():
            raise MCPServerError(
                f"MCP server {self.server.name!r} is not running (its run has ended)",
                server=self.server.name,
            )
        return await self.client.call_tool(name, arguments)

    async def serve(self) -> None:
        """Start the server, list its tools, then keep it open until `stop` is set."""
        server = self.server
        seconds, cut_by = self.limit(server.start_timeout, "start_timeout")
        try:
            with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as errlog:
                with anyio.CancelScope(deadline=anyio.current_time() + seconds) as scope:
                    try:
                        await self._serve(errlog, scope)
                    except (MCPServerError, ConfigError) as exc:
                        self.error = exc
                    except Exception as exc:
                        self._failed(exc, errlog)
                if scope.cancelled_caught and not self.ready.is_set():
                    what = f"did not start within {seconds:.3g} s ({cut_by})"
                    self.error = self._failure(what, _tail(errlog))
        finally:
            self.client = None
            self.ready.set()
            log.info("mcp_server_stopped", server=server.name)

    async def _serve(self, errlog: TextIO, scope: anyio.CancelScope) -> None:
        from mcp import Client

        server = self.server
        async with contextlib.AsyncExitStack() as stack:
            transport, before = server._transport(errlog)
            for context in before:
                await stack.enter_async_context(context)
            client = await stack.enter_async_context(Client(transport, cache=None))
            self.listed = await _list(client, server)
            scope.deadline = math.inf
            self.client = client
            log.info("mcp_server_started", server=server.name, tools=len(self.listed))
            self.ready.set()
            await self.stop.wait()

    def _failed(self, exc: Exception, errlog: TextIO) -> None:
        error = _describe(exc)
        if self.ready.is_set():
            # It ran, then went away (crashed, or the connection dropped): later calls say so.
            log.warning("mcp_server_failed", server=self.server.name, error=error)
            return
        stderr = _tail(errlog) if self.server._needs_errlog() else ""
        self.error = self._failure(f"could not be started: {error}", stderr)

    def _failure(self, what: str, stderr: str) -> MCPServerError:
        server = self.server
        shown = f"; its stderr ended with:\n{stderr}" if stderr else ""
        remedy = (
            "; check the command, its args and env (run it by hand to see)"
            if isinstance(server, MCPServerStdio)
            else "; check that the server is running at this URL and the headers it needs"
        )
        return MCPServerError(
            _secrets.redact(f"MCP server {server.name!r} ({server.describe()}) {what}{remedy}")
            + shown,
            server=server.name,
            stderr=stderr,
        )

    def tools_for(self, view: MCPServer) -> tuple[MCPTool, ...]:
        """The tools `view` offers (listed once per start; built once per view)."""
        found = self.views.get(view)
        if found is None:
            found = self.views[view] = _offer(view, self.listed, self)
        return found


class _Pool:
    """The servers started in one run (or by one `async with server:`), each in its own task."""

    def __init__(self, deadline: Callable[[], float | None] | None) -> None:
        self.deadline = deadline
        self.connections: dict[MCPServer, _Connection] = {}
        self._stack = contextlib.AsyncExitStack()
        self._group: TaskGroup | None = None

    async def __aenter__(self) -> _Pool:
        self._group = await self._stack.enter_async_context(anyio.create_task_group())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for connection in self.connections.values():
            connection.stop.set()
        self._group = None
        try:
            await self._stack.__aexit__(exc_type, exc, traceback)
        except BaseExceptionGroup as group:
            # The task group wraps what the body raised; the servers' tasks raise nothing. The
            # body's error goes on as itself (returning lets `async with` re-raise it).
            if exc is None or any(leaf is not exc for leaf in _leaves(group)):
                raise

    async def connect(self, server: MCPServer) -> _Connection:
        """The connection to `server` (a root), started by the first caller, waited for by the
        others; raises the start's error to each of them."""
        connection = self.connections.get(server)
        if connection is None:
            if self._group is None:
                raise MCPServerError(
                    f"MCP server {server.name!r} cannot start: its run has ended",
                    server=server.name,
                )
            connection = self.connections[server] = _Connection(server, self.deadline)
            self._group.start_soon(connection.serve, name=f"mcp server {server.name}")
        await connection.ready.wait()
        error = connection.error
        if error is not None:
            # A copy per caller: one exception object raised in many tasks tangles tracebacks.
            if isinstance(error, MCPServerError):
                raise MCPServerError(str(error), server=error.server, stderr=error.stderr)
            raise ConfigError(str(error))
        return connection


_POOL: ContextVar[_Pool | None] = ContextVar("delegate_mcp_pool", default=None)


@contextlib.asynccontextmanager
async def mcp_servers_open(
    *, deadline: Callable[[], float | None] | None = None
) -> AsyncIterator[None]:
    """A run's scope for MCP servers: servers the run's agents use start (once each) inside
    it, and all of them stop when it ends.

    Args:
        deadline: returns the run's deadline on anyio's clock (or None); starts and calls are
            cut at it.
    """
    async with _Pool(deadline) as pool:
        token = _POOL.set(pool)
        try:
            yield
        finally:
            _POOL.reset(token)


def needs_mcp_pool(servers: Iterable[MCPServer]) -> bool:
    """True when some of `servers` has nowhere to run: no run's pool is open and it is not
    held open by `async with`."""
    return _POOL.get() is None and any(server._root._held is None for server in servers)


async def mcp_tools(
    servers: Sequence[MCPServer], taken: Mapping[str, str], *, agent: str
) -> list[Tool]:
    """The tools of `servers` for one agent run, starting (and listing) each server if this run
    has not yet.

    Args:
        servers: the agent's servers (or views of them).
        taken: names already given to the model, each with what it is ("the Python tool
            'search'").
        agent: the agent's name, for messages.

    Raises:
        MCPServerError: a server could not be started or listed.
        ConfigError: two tools have one name, or an allow-list names a tool the server lacks.
    """
    owners = dict(taken)
    found: list[Tool] = []
    pool = _POOL.get()
    for server in servers:
        root = server._root
        holder = root._held or pool
        if holder is None:
            raise ConfigError(
                f"Agent {agent!r}: MCP server {server.name!r} is used outside a run; call "
                "agent.run(...) or an Orchestrator, or hold it open with `async with server:`"
            )
        connection = await holder.connect(root)
        for item in connection.tools_for(server):
            if item.name in owners:
                raise ConfigError(
                    f"Agent {agent!r}: the tool {item.name!r} of MCP server {server.name!r} has "
                    f"the name of {owners[item.name]}; give the server a prefix, e.g. "
                    f"prefix='{server.name.replace('.', '_').replace('-', '_')}_'"
                )
            owners[item.name] = f"the tool {item.remote_name!r} of MCP server {server.name!r}"
            found.append(item)
    return found


def _offer(
    view: MCPServer, listed: Sequence[ListedTool], connection: _Connection
) -> tuple[MCPTool, ...]:
    names = [item.name for item in listed]
    where = f"MCP server {view.name!r} ({view.describe()})"
    wanted = [
        *(view.tools or ()),
        *(view.requires_approval if not isinstance(view.requires_approval, bool) else ()),
    ]
    for name in sorted(set(wanted)):
        if name not in names:
            raise ConfigError(
                f"{where} has no tool {name!r}{did_you_mean(name, names)}; its tools are "
                f"{', '.join(sorted(names)) or 'none'}"
            )
    offered: list[MCPTool] = []
    for item in listed:
        if view.tools is not None and item.name not in view.tools:
            continue
        if not _TOOL_NAME.match(view.prefix + item.name):
            raise ConfigError(
                f"{where} has a tool named {item.name!r}, which a model cannot call (names "
                "are 1-64 letters, digits, '_' or '-'); leave it out with tools=[...]"
            )
        offered.append(MCPTool(view, item, connection))
    return tuple(offered)


async def _list(client: Client, server: MCPServer) -> list[ListedTool]:
    listed: list[ListedTool] = []
    cursor: str | None = None
    for _ in range(_MAX_PAGES):
        page = await client.list_tools(cursor=cursor)
        listed.extend(page.tools)
        cursor = page.next_cursor
        if cursor is None:
            break
    if len(listed) > _MAX_TOOLS:
        raise MCPServerError(
            f"MCP server {server.name!r} ({server.describe()}) lists {len(listed)} tools, more "
            f"than {_MAX_TOOLS}; give it an allow-list with tools=[...]",
            server=server.name,
        )
    return listed


def _render(result: CallToolResult) -> str:
    parts = [_block(block) for block in result.content]
    text = "\n".join(part for part in parts if part)
    if result.is_error:
        return f"Error: {text or 'the tool failed and said nothing more'}"
    if not text and result.structured_content is not None:
        # Servers send structured content with its JSON as text too (the spec asks them to);
        # the text is what a model reads best, and what SDKs wrap as {"result": ...} is not.
        return json.dumps(result.structured_content, ensure_ascii=False, default=str)
    return text


def _block(block: Any) -> str:
    kind = getattr(block, "type", "")
    if kind == "text":
        return str(block.text)
    if kind in ("image", "audio"):
        return f"[{kind}: {block.mime_type}, {len(block.data)} base64 characters]"
    if kind == "resource":
        resource = block.resource
        text = getattr(resource, "text", None)
        return str(text) if text is not None else f"[resource {resource.uri}]"
    if kind == "resource_link":
        return f"[resource link {block.uri}: {block.name}]"
    return f"[{kind or type(block).__name__} content]"


def _names(where: str, key: str, values: object) -> frozenset[str]:
    if isinstance(values, str) or not isinstance(values, Iterable):
        raise ConfigError(f"{where}{key} must be a list of tool names, got {values!r}")
    names = list(values)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ConfigError(
            f"{where}{key} must be a non-empty list of tool names, got {names!r}; e.g. "
            f"{key}=['search']"
        )
    return frozenset(names)


def _seconds(where: str, key: str, value: object) -> float:
    if (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    ):
        return float(value)
    raise ConfigError(f"{where}{key} must be a positive number of seconds, got {value!r}")


def _default_name(text: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:100]
    return name or "mcp"


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _describe(exc: BaseException) -> str:
    """`Type: message` of the first exception in `exc` that is not a group (the SDK's task
    groups wrap what failed), masked."""
    leaf = _leaves(exc)[0]
    return _secrets.redact(f"{type(leaf).__name__}: {leaf}".rstrip(": "))


def _tail(errlog: TextIO) -> str:
    try:
        errlog.flush()
        size = errlog.seek(0, os.SEEK_END)
        errlog.seek(max(size - 4 * _STDERR_TAIL, 0))
        text = errlog.read()
    except (OSError, ValueError):
        return ""
    return _secrets.redact(text.strip()[-_STDERR_TAIL:])
