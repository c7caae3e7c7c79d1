"""The one way delegate offers a blocking twin of a coroutine.

- `run_sync(fn, *args, **kwargs)` runs a coroutine function to completion on a fresh event loop;
- `syncify(method)` declares a method's blocking twin from the async method itself, so the twin's
  parameters, defaults, annotations and docs are the original's and cannot drift::

      class Agent:
          async def run(self, prompt: str, *, tools: Sequence[Tool] = ()) -> AgentResult[Any]: ...

          run_sync = syncify(run)

Every `*_sync` method is made this way; none is a hand-copied twin.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

import anyio

from delegate.errors import ConfigError

__all__ = ["run_sync", "syncify"]

P = ParamSpec("P")
T = TypeVar("T")
S = TypeVar("S")


def run_sync(fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run `fn(*args, **kwargs)` to completion on a fresh asyncio event loop.

    Raises:
        ConfigError: when called from inside a running event loop, where the caller should
            `await` the async method instead.
    """
    try:
        anyio.get_current_task()
    except RuntimeError:
        pass  # no event loop here: the normal case
    else:
        name = getattr(fn, "__name__", "the coroutine")
        raise ConfigError(
            f"{name}_sync() was called inside a running event loop; await {name}() instead"
        )

    async def main() -> T:
        return await fn(*args, **kwargs)

    runner: Callable[[], Awaitable[Any]] = functools.partial(main)
    result: T = anyio.run(runner, backend="asyncio")
    return result


def syncify(
    method: Callable[Concatenate[S, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[S, P], T]:
    """The blocking twin of the async `method`, to assign in the same class body as
    `name_sync = syncify(name)`.

    The twin has the method's signature (`inspect.signature` follows `__wrapped__`, mypy sees
    the same parameters through the ParamSpec) and its docstring, under a first line that says
    it blocks. It calls the method by name on the instance, so a subclass that overrides the
    async method gets a twin that runs its override.

    Raises:
        ConfigError: `method` is not a coroutine function (the twin is declared from the
            async original, never the other way round).
    """
    if not inspect.iscoroutinefunction(method):
        raise ConfigError(
            f"syncify() takes an async method, got {method!r}; declare the twin as "
            "`name_sync = syncify(name)` after `async def name(...)`"
        )
    name = method.__name__

    @functools.wraps(method)
    def blocking(self: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
        bound = cast(Callable[P, Awaitable[T]], getattr(self, name))
        return run_sync(bound, *args, **kwargs)

    blocking.__name__ = f"{name}_sync"
    blocking.__qualname__ = f"{method.__qualname__}_sync"
    summary = f"Blocking twin of `{name}`, for scripts and notebooks without an event loop."
    blocking.__doc__ = f"{summary}\n\n{inspect.getdoc(method)}" if method.__doc__ else summary
    return blocking
