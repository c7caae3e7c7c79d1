"""The blackboard: the shared memory the agents of a run read and write.

`Memory` sits over a `Store` and scopes every entry by namespace. Three namespaces matter to a run:

- `"run"`: the run's own, `run:<run_id>` — the default for writes and reads when a run is set;
- `"workflow"`: `workflow:<name>`, shared by every run of that workflow;
- `"global"`: shared by everything that uses the store.

Entries are versioned: `put` adds a version and never destroys the previous value (`history`
shows them all). Search is full text over key, text and value (SQLite FTS5, PostgreSQL
`tsvector`)::

    memory = Memory(store, run_id="r1", workflow="research")
    await memory.put("findings/anyio", {"stars": 2000}, tags=["github"])
    await memory.get("findings/anyio")                     # {"stars": 2000}
    await memory.put("style", "short sentences", namespace="workflow")
    [r.key for r in await memory.search("sentences")]      # ["style"]

`memory_tools(memory)` gives an agent `remember`, `recall` and `search_memory`, bound to the
memory's namespaces. A namespace that does not exist (`"run"` on a memory without a run) fails
closed with `ConfigError`; nothing ever falls back to reading every namespace.

Everything a caller (or a model, through the tools) passes is checked here, before the store sees
it: a namespace, key, value, tag, text, task id, prefix or limit that cannot be stored raises
`MemoryInputError` (a `ConfigError`), the same on SQLite and PostgreSQL. Neither database stores a
lone surrogate or (PostgreSQL) a NUL character, and values nest at most 100 levels deep.
"""

from __future__ import annotations

import builtins
import json
import re
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Literal, TypeVar

import anyio.to_thread
from pydantic import Field

from delegate._json import MAX_JSON_DEPTH
from delegate.agents.tools import Tool
from delegate.errors import ConfigError, MemoryInputError
from delegate.memory.records import MemoryRecord
from delegate.memory.store import Store, validate_key, validate_namespace

__all__ = ["Memory", "NamespaceAlias", "memory_tools", "relevant", "render"]

NamespaceAlias = Literal["run", "workflow", "global"]
"""The namespaces of a run, by role; `Memory` resolves them to concrete names."""

_ALIASES: tuple[NamespaceAlias, ...] = ("run", "workflow", "global")
_NAME = re.compile(r"[A-Za-z0-9_.:-]+")
_MAX_LIMIT = 1000
# How much of one value the model is shown in search results.
_PREVIEW_CHARS = 600

_T = TypeVar("_T")
_BARE_TAG = (
    "memory tags must be a list of str, got the single string {tags!r}; wrap it: tags=[{tags!r}]"
)


class Memory:
    """Versioned, namespaced shared memory over a `Store`.

    Every method is async and runs the (sync, thread-safe) store in a worker thread, so the event
    loop never blocks on the database.

    Args:
        store: where entries live.
        run_id: the run this memory belongs to; enables the `"run"` namespace (`run:<run_id>`).
        workflow: the workflow the run belongs to; enables `"workflow"` (`workflow:<name>`).

    Writes and single-key reads without `namespace=` use the most specific namespace there is:
    the run's, else the workflow's, else `"global"`.

    Raises:
        ConfigError: `run_id` or `workflow` is not a valid name (letters, digits, `_.:-`).
    """

    __slots__ = ("_namespaces", "run_id", "store", "workflow")

    def __init__(
        self, store: Store, *, run_id: str | None = None, workflow: str | None = None
    ) -> None:
        self.store = store
        self.run_id = _check_name("run_id", run_id, "run:")
        self.workflow = _check_name("workflow", workflow, "workflow:")
        namespaces: dict[NamespaceAlias, str] = {}
        if self.run_id is not None:
            namespaces["run"] = f"run:{self.run_id}"
        if self.workflow is not None:
            namespaces["workflow"] = f"workflow:{self.workflow}"
        namespaces["global"] = "global"
        self._namespaces = namespaces

    def __repr__(self) -> str:
        return f"Memory(run_id={self.run_id!r}, workflow={self.workflow!r})"

    @property
    def namespaces(self) -> dict[NamespaceAlias, str]:
        """The namespaces this memory can address by role, most specific first."""
        return dict(self._namespaces)

    @property
    def default_namespace(self) -> str:
        """Where writes and single-key reads go without `namespace=`."""
        return next(iter(self._namespaces.values()))

    def bind(self, *, run_id: str | None = None, workflow: str | None = None) -> Memory:
        """The same store, seen from another run (the orchestrator makes one per run)."""
        return Memory(self.store, run_id=run_id, workflow=workflow)

    def resolve(self, namespace: str | None = None) -> str:
        """The concrete namespace for `namespace`: an alias, a concrete name, or None (default).

        Raises:
            ConfigError: the alias has no namespace on this memory (`"run"` without a run_id), or
                the name is not valid.
        """
        if namespace is None:
            return self.default_namespace
        if not isinstance(namespace, str):
            raise MemoryInputError(
                f"memory namespace must be a str such as 'run', 'workflow' or 'global', got "
                f"{type(namespace).__name__}",
                field="namespace",
            )
        if namespace in _ALIASES:
            concrete = self._namespaces.get(namespace)
            if concrete is None:
                raise MemoryInputError(_missing_alias(namespace), field="namespace")
            return str(concrete)
        return validate_namespace(namespace)

    async def put(
        self,
        key: str,
        value: Any,
        *,
        namespace: str | None = None,
        tags: Sequence[str] = (),
        text: str | None = None,
        task_id: str | None = None,
    ) -> MemoryRecord:
        """Write a new version of `key`; earlier versions stay in `history`.

        Args:
            key: 1-500 characters, no control characters.
            value: anything JSON can hold (dicts, lists, str, numbers, bools, None).
            namespace: `"run"`, `"workflow"`, `"global"`, a concrete namespace, or None for the
                default.
            tags: labels to filter searches by.
            text: more text for full-text search to match, besides the key and the value
                (which are always searchable); e.g. a summary of a large value.
            task_id: the task that wrote it, for provenance.

        Raises:
            MemoryInputError: an invalid key, namespace, tag, text or task id, or a value JSON
                cannot hold (a `ConfigError`).
        """
        resolved = self.resolve(namespace)
        validate_key(key)
        _check_json(key, value)
        tags = _check_tags(tags)
        if text is not None:
            _check_text(f"memory {key!r}: text", text, "text")
        if task_id is not None:
            validate_key(task_id, field="task_id")
        return await self._call(
            self.store.put_memory,
            resolved,
            key,
            value,
            text=text,
            tags=tags,
            run_id=self.run_id,
            task_id=task_id,
        )

    async def get(self, key: str, *, namespace: str | None = None) -> Any | None:
        """The latest value of `key`, or None when nothing was ever written under it.

        A stored None also reads as None; `get_record` tells the two apart.
        """
        record = await self.get_record(key, namespace=namespace)
        return None if record is None else record.value

    async def get_record(self, key: str, *, namespace: str | None = None) -> MemoryRecord | None:
        """The latest version of `key` with its provenance, or None."""
        resolved = self.resolve(namespace)
        validate_key(key)
        return await self._call(self.store.get_memory, resolved, key)

    async def history(
        self, key: str, *, namespace: str | None = None
    ) -> builtins.list[MemoryRecord]:
        """Every version of `key`, oldest first ([] when none)."""
        resolved = self.resolve(namespace)
        validate_key(key)
        return await self._call(self.store.memory_history, resolved, key)

    async def search(
        self,
        text: str,
        *,
        namespace: str | Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
        limit: int = 10,
    ) -> builtins.list[MemoryRecord]:
        """Full-text search over the latest versions, best match first.

        Args:
            text: what to look for; it is data, never query syntax.
            namespace: one namespace, a list of them, or None for all of this memory's (run,
                workflow and global, those that exist).
            tags: only entries carrying every one of these tags.
            limit: at most this many results (1-1000).

        Raises:
            MemoryInputError: an invalid namespace, tag or limit, or an empty list of namespaces
                (a `ConfigError`).
        """
        if not isinstance(text, str):
            raise MemoryInputError(
                f"memory search text must be a str, got {type(text).__name__}", field="query"
            )
        namespaces = self._resolve_many(namespace)
        if tags is not None:
            tags = _check_tags(tags)
        _check_limit(limit)
        if not text.strip():
            return []
        return await self._call(
            self.store.search_memories, text, namespaces=namespaces, tags=tags, limit=limit
        )

    async def list(
        self, prefix: str = "", *, namespace: str | None = None
    ) -> builtins.list[MemoryRecord]:
        """The latest version of every key starting with `prefix`, in one namespace."""
        resolved = self.resolve(namespace)
        if not isinstance(prefix, str):
            raise MemoryInputError(
                f"memory prefix must be a str, got {type(prefix).__name__}", field="prefix"
            )
        if prefix:
            validate_key(prefix, field="prefix")
        return await self._call(self.store.list_memories, resolved, prefix)

    def _resolve_many(self, namespace: str | Sequence[str] | None) -> builtins.list[str]:
        if namespace is None:
            return builtins.list(self._namespaces.values())
        if isinstance(namespace, str):
            return [self.resolve(namespace)]
        if not isinstance(namespace, Sequence):
            raise MemoryInputError(
                f"memory namespace must be a str, a list of str or None, got "
                f"{type(namespace).__name__}",
                field="namespace",
            )
        resolved = builtins.list(dict.fromkeys(self.resolve(name) for name in namespace))
        if not resolved:
            raise MemoryInputError(
                "memory search got an empty list of namespaces; name at least one (e.g. "
                "namespace=['run', 'global']) or pass None for all of this memory's",
                field="namespace",
            )
        return resolved

    async def _call(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        def call() -> _T:
            return fn(*args, **kwargs)

        return await anyio.to_thread.run_sync(call)


def memory_tools(memory: Memory, *, task_id: str | None = None) -> builtins.list[Tool]:
    """The tools `remember`, `recall` and `search_memory`, bound to `memory`.

    `remember` writes to the run's namespace, or with `scope` the workflow's (later runs of the
    same workflow find it) or the global one; `recall` reads the run's, then the workflow's, then
    the global namespace; `search_memory` searches all of them.

    Args:
        memory: the memory the tools read and write.
        task_id: recorded as the writer of what `remember` stores.
    """

    async def remember(
        key: str,
        value: str,
        tags: tuple[str, ...] = (),
        scope: Literal["run", "workflow", "global"] = "run",
    ) -> str:
        """Save a fact, result or note to the shared memory, for you and other agents to use later.

        Writing a key again keeps the old value in its history; `recall` returns the newest.

        Args:
            key: a short, descriptive name for what you store, e.g. "findings/anyio-license".
            value: what to remember, as text.
            tags: optional labels to find it by, e.g. ["license", "python"].
            scope: who can use it: "run" (this run, the default), "workflow" (later runs of
                this workflow too) or "global" (every run).
        """
        try:
            namespace = None if scope == "run" else memory.resolve(scope)  # run: the default
        except ConfigError as exc:
            return f"not remembered: {exc}"
        record = await memory.put(key, value, tags=tags, task_id=task_id, namespace=namespace)
        where = {"run": "", "workflow": " for later runs of this workflow", "global": " for all"}
        return f"remembered {record.key!r} (version {record.version}){where[scope]}"

    async def recall(key: str) -> str:
        """Read what the shared memory holds under an exact key (the newest value).

        Args:
            key: the exact key it was saved under; use search_memory when you do not know it.
        """
        for namespace in memory.namespaces.values():
            record = await memory.get_record(key, namespace=namespace)
            if record is not None:
                return render(record.value)
        return f"no memory under {key!r}"

    async def search_memory(query: str, limit: Annotated[int, Field(ge=1, le=20)] = 5) -> str:
        """Search the shared memory by words; returns the best matching entries as JSON.

        Args:
            query: words to look for in keys and values.
            limit: how many entries to return, 1-20.
        """
        records = await memory.search(query, limit=limit)
        if not records:
            return f"no memories match {query!r}"
        return json.dumps([_summary(memory, record) for record in records], ensure_ascii=False)

    return [Tool(remember), Tool(recall), Tool(search_memory)]


async def relevant(memory: Memory, text: str, limit: int = 5) -> builtins.list[MemoryRecord]:
    """The entries of `memory` most relevant to `text` (e.g. a goal), best first.

    Used to show a planner what the run, its workflow and everyone before already know.
    """
    return await memory.search(text, limit=limit)


def render(value: Any) -> str:
    """A memory value as the text a model reads: a str as it is, anything else as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _summary(memory: Memory, record: MemoryRecord) -> dict[str, Any]:
    by_name = {concrete: alias for alias, concrete in memory.namespaces.items()}
    text = render(record.value)
    if len(text) > _PREVIEW_CHARS:
        text = text[:_PREVIEW_CHARS] + f"… ({len(text)} characters; recall the key for all)"
    summary: dict[str, Any] = {
        "key": record.key,
        "value": text,
        "namespace": by_name.get(record.namespace, record.namespace),
    }
    if record.tags:
        summary["tags"] = builtins.list(record.tags)
    return summary


def _missing_alias(alias: str) -> str:
    if alias == "run":
        return (
            "memory namespace 'run' needs a run: this Memory has no run_id; create it with "
            "Memory(store, run_id=...) (or memory.bind(run_id=...)), or pass namespace='global'"
        )
    return (
        "memory namespace 'workflow' needs a workflow: this Memory has no workflow name; create "
        "it with Memory(store, workflow=...), or pass namespace='global'"
    )


def _check_name(what: str, value: str | None, prefix: str) -> str | None:
    if value is None:
        return None
    if (
        not isinstance(value, str)
        or not _NAME.fullmatch(value)
        or len(prefix) + len(value) > 200  # the namespace it makes must stay valid
    ):
        shown = repr(value)[:80] if isinstance(value, str) else type(value).__name__
        raise MemoryInputError(
            f"memory {what} {shown} is not valid: use 1-{200 - len(prefix)} letters, digits, "
            "'_', '.', ':' or '-'",
            field=what,
        )
    return value


def _check_limit(limit: int) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= _MAX_LIMIT:
        raise MemoryInputError(
            f"memory search limit must be an int from 1 to {_MAX_LIMIT}, got {limit!r:.40}",
            field="limit",
        )


def _check_tags(tags: Sequence[str]) -> builtins.list[str]:
    if isinstance(tags, str):
        raise MemoryInputError(_BARE_TAG.format(tags=tags[:60]), field="tags")
    if not isinstance(tags, Sequence | set | frozenset):
        raise MemoryInputError(
            f"memory tags must be a list of str, got {type(tags).__name__}", field="tags"
        )
    for tag in tags:
        if not isinstance(tag, str) or not 1 <= len(tag) <= 200 or not tag.isprintable():
            shown = repr(tag)[:80] if isinstance(tag, str) else f"of type {type(tag).__name__}"
            raise MemoryInputError(
                f"memory tag {shown} is not valid: use 1-200 printable characters", field="tags"
            )
    return builtins.list(tags)


def _surrogate(text: str) -> str | None:
    """The first lone surrogate in `text` (which UTF-8 cannot encode), or None."""
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return text[exc.start]
    return None


def _check_text(what: str, text: Any, field: str) -> None:
    if not isinstance(text, str):
        raise MemoryInputError(
            f"{what} must be a str or None, got {type(text).__name__}", field=field
        )
    if "\x00" in text:
        raise MemoryInputError(f"{what} contains a NUL character; remove it", field=field)
    surrogate = _surrogate(text)
    if surrogate is not None:
        raise MemoryInputError(
            f"{what} contains a lone surrogate ({surrogate!r}), which is not text; remove it",
            field=field,
        )


def _check_json(key: str, value: Any) -> None:
    """Refuse, before any write, what JSON cannot hold exactly."""
    _check_structure(key, value)
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False, default=_refuse)
    except (TypeError, ValueError, RecursionError) as exc:
        raise MemoryInputError(
            f"memory {key!r}: the value is not JSON-serializable ({str(exc)[:200]}); store "
            "dicts, lists, str, int, float, bool or None (e.g. model.model_dump(mode='json') "
            "for a pydantic model)",
            field="value",
        ) from exc
    surrogate = _surrogate(text)
    if surrogate is not None:
        raise MemoryInputError(
            f"memory {key!r}: the value contains a lone surrogate ({surrogate!r}), which is not "
            "text and cannot be stored; remove it",
            field="value",
        )


def _refuse(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} {value!r:.60} is not JSON")


def _check_structure(key: str, value: Any) -> None:
    # json.dumps turns {1: "a"} into {"1": "a"}: what comes back would not be what was stored.
    # And a value nested a thousand levels deep breaks the recursive code that reads it back.
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list | tuple) and depth > MAX_JSON_DEPTH:
            raise MemoryInputError(
                f"memory {key!r}: the value nests more than {MAX_JSON_DEPTH} levels deep; "
                "flatten it",
                field="value",
            )
        if isinstance(item, dict):
            for name, child in item.items():
                if not isinstance(name, str):
                    raise MemoryInputError(
                        f"memory {key!r}: the value has a dict key {name!r:.60} of type "
                        f"{type(name).__name__}; JSON objects have str keys only",
                        field="value",
                    )
                stack.append((child, depth + 1))
        elif isinstance(item, list | tuple):
            stack.extend((child, depth + 1) for child in item)
