"""Shared fixtures: asyncio as the only anyio backend, and no test may reach a real provider."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from delegate.testing import block_model_requests


@pytest.fixture
def anyio_backend() -> str:
    # litellm runs only on asyncio, and so does delegate.
    return "asyncio"


@pytest.fixture(autouse=True)
def _no_real_model_requests() -> Iterator[None]:
    with block_model_requests():
        yield
