"""The one way delegate offers a blocking twin of a coroutine: `run_sync(fn, *args, **kwargs)`.

Every `*_sync` method wraps its async original through here; none is a hand-copied twin.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

import anyio

from delegate.errors import ConfigError

__all__ = ["run_sync"]

P = ParamSpec("P")
T = TypeVar("T")


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
