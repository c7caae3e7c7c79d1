"""Shared fixtures: asyncio as the only anyio backend, and no test may reach a real provider."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from delegate.testing import block_model_requests


@pytest.fixture
def anyio_backend() -> str:
    # litellm runs only on asyncio, and so does delegate.
    return "asyncio"


@pytest.fixture(autouse=True, scope="session")
def _private_delegate_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    # The CLI and YAML workflows keep runs in $DELEGATE_HOME/delegate.db: keep the suite's out
    # of ~. Without DELEGATE_DB_URL an Orchestrator() keeps nothing: a test that is not about
    # the store runs without one.
    saved = {name: os.environ.get(name) for name in ("DELEGATE_HOME", "DELEGATE_DB_URL")}
    os.environ["DELEGATE_HOME"] = str(tmp_path_factory.mktemp("delegate-home"))
    os.environ.pop("DELEGATE_DB_URL", None)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(autouse=True)
def _no_real_model_requests() -> Iterator[None]:
    with block_model_requests():
        yield
