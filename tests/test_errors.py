"""`from_litellm` maps every litellm exception onto delegate's errors; `did_you_mean` suggests.

litellm's exceptions are built directly here, the way litellm builds them; wire-level mapping
(through a fake OpenAI server) is in test_litellm_model.py.
"""

from __future__ import annotations

import email.utils
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from delegate.agents.models import _litellm
from delegate.errors import (
    AuthenticationError,
    BadRequestError,
    ContentPolicyError,
    ContextWindowExceededError,
    DelegateError,
    ModelError,
    ModelTimeoutError,
    OutputValidationError,
    PermanentModelError,
    ProviderUnavailableError,
    RateLimitError,
    TaskTimeoutError,
    ToolLoopError,
    TransientModelError,
    did_you_mean,
    from_litellm,
)

pytestmark = pytest.mark.anyio

MODEL = "openai/gpt-4o-mini"


litellm: Any = None


@pytest.fixture(autouse=True, scope="module")
def _import_litellm() -> None:
    # Imported the way delegate imports it (offline cost map, quiet, loggers routed), when the
    # first test here runs rather than at collection.
    global litellm
    litellm = _litellm()


def _response(status: int, headers: dict[str, str] | None = None) -> httpx.Response:
    request = httpx.Request("POST", "https://api.example.com/v1/chat/completions")
    return httpx.Response(status, headers=headers, request=request)


def _api_error(status: int) -> Exception:
    error: Exception = litellm.APIError(
        status_code=status, message="odd", llm_provider="openai", model="gpt-4o-mini"
    )
    return error


Factory = Callable[[], Exception]

CASES: list[tuple[str, Factory, type[ModelError]]] = [
    (
        "context window before bad request",
        lambda: litellm.ContextWindowExceededError("too long", "gpt-4o-mini", "openai"),
        ContextWindowExceededError,
    ),
    (
        "content policy before bad request",
        lambda: litellm.ContentPolicyViolationError("refused", "gpt-4o-mini", "openai"),
        ContentPolicyError,
    ),
    (
        "rate limit",
        lambda: litellm.RateLimitError("slow down", "openai", "gpt-4o-mini"),
        RateLimitError,
    ),
    (
        "timeout before connection error",
        lambda: litellm.Timeout("took too long", "gpt-4o-mini", "openai"),
        ModelTimeoutError,
    ),
    (
        "connection error",
        lambda: litellm.APIConnectionError("refused", "openai", "gpt-4o-mini"),
        ProviderUnavailableError,
    ),
    (
        "503",
        lambda: litellm.ServiceUnavailableError("down", "openai", "gpt-4o-mini"),
        ProviderUnavailableError,
    ),
    (
        "500",
        lambda: litellm.InternalServerError("boom", "openai", "gpt-4o-mini"),
        ProviderUnavailableError,
    ),
    (
        "502",
        lambda: litellm.BadGatewayError("bad gateway", "openai", "gpt-4o-mini"),
        ProviderUnavailableError,
    ),
    (
        "401",
        lambda: litellm.AuthenticationError("bad key", "openai", "gpt-4o-mini"),
        AuthenticationError,
    ),
    (
        "403",
        lambda: litellm.PermissionDeniedError(
            "forbidden", "openai", "gpt-4o-mini", response=_response(403)
        ),
        AuthenticationError,
    ),
    (
        "400",
        lambda: litellm.BadRequestError("malformed", "gpt-4o-mini", "openai"),
        BadRequestError,
    ),
    (
        "404",
        lambda: litellm.NotFoundError("no such model", "gpt-9", "openai"),
        BadRequestError,
    ),
    (
        "422",
        lambda: litellm.UnprocessableEntityError(
            "unprocessable", "gpt-4o-mini", "openai", response=_response(422)
        ),
        BadRequestError,
    ),
    (
        "unsupported parameter",
        lambda: litellm.UnsupportedParamsError("no reasoning_effort", "openai", "gpt-4o-mini"),
        BadRequestError,
    ),
    (
        "402 payment required",
        lambda: litellm.PaymentRequiredError("add credits", "gpt-4o-mini", "openai"),
        BadRequestError,
    ),
    (
        "unparseable provider answer",
        lambda: litellm.APIResponseValidationError("garbled", "openai", "gpt-4o-mini"),
        ProviderUnavailableError,
    ),
    (
        "litellm's own budget",
        lambda: litellm.BudgetExceededError(current_cost=2.0, max_budget=1.0),
        PermanentModelError,
    ),
    ("APIError 503 by status", lambda: _api_error(503), ProviderUnavailableError),
    ("APIError 408 by status", lambda: _api_error(408), ProviderUnavailableError),
    ("APIError 409 by status", lambda: _api_error(409), ProviderUnavailableError),
    ("APIError 429 by status", lambda: _api_error(429), RateLimitError),
    ("APIError 418 by status", lambda: _api_error(418), PermanentModelError),
    ("not a litellm error", lambda: ValueError("strange"), PermanentModelError),
]


@pytest.mark.parametrize(
    ("factory", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_each_litellm_exception_maps_to_its_delegate_error(
    factory: Factory, expected: type[ModelError]
) -> None:
    exc = factory()
    mapped = from_litellm(exc, model=MODEL)
    assert type(mapped) is expected
    assert mapped.model == MODEL
    assert mapped.__cause__ is exc
    assert str(mapped).startswith(f"{MODEL}: {type(exc).__name__}: ")
    assert str(exc) in str(mapped)


def test_the_order_of_checks_is_forced_by_litellm_subclassing() -> None:
    # These are the reasons the order in from_litellm matters.
    assert issubclass(litellm.ContextWindowExceededError, litellm.BadRequestError)
    assert issubclass(litellm.ContentPolicyViolationError, litellm.BadRequestError)
    assert issubclass(litellm.Timeout, openai.APIConnectionError)
    assert litellm.Timeout("slow", "m", "p").status_code == 408


def test_remedies_are_named() -> None:
    window = from_litellm(litellm.ContextWindowExceededError("too long", "m", "openai"), model="m")
    assert str(window).endswith(
        " — shorten the prompt or dependency context, or use a model with a larger context window"
    )
    auth = from_litellm(litellm.AuthenticationError("bad key", "openai", "m"), model="m")
    assert str(auth).endswith(" — check the provider's API key environment variable")


def test_the_model_name_defaults_in_the_message() -> None:
    mapped = from_litellm(ValueError("strange"))
    assert mapped.model == ""
    assert str(mapped) == "model: ValueError: strange"


def test_mapping_before_litellm_is_imported_does_not_import_it() -> None:
    code = (
        "import sys\n"
        "from delegate.errors import ProviderUnavailableError, from_litellm\n"
        "class Gateway(Exception):\n"
        "    status_code = 503\n"
        "mapped = from_litellm(Gateway('down'), model='m')\n"
        "assert type(mapped) is ProviderUnavailableError, type(mapped)\n"
        "assert 'litellm' not in sys.modules, 'litellm imported'\n"
    )
    # Offline cost map: under the bug, litellm's import must not also wait on the network.
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr


# --- retry_after -------------------------------------------------------------------------------


def _rate_limit(headers: dict[str, str] | None) -> Exception:
    error: Exception = litellm.RateLimitError(
        "slow down", "openai", "gpt-4o-mini", response=_response(429, headers)
    )
    return error


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "250", "retry-after": "1"}, 0.25),  # the precise one wins
        ({"retry-after": "soon"}, None),
        ({}, None),
        (None, None),
    ],
)
def test_retry_after_is_read_from_the_response_headers(
    headers: dict[str, str] | None, seconds: float | None
) -> None:
    mapped = from_litellm(_rate_limit(headers), model=MODEL)
    assert isinstance(mapped, RateLimitError)
    assert mapped.retry_after == seconds


def test_retry_after_is_read_from_the_headers_litellm_attaches() -> None:
    # On the wire litellm keeps the provider's headers in `litellm_response_headers`; the
    # exception's own `response` is a stand-in without them.
    exc = _rate_limit(None)
    exc.litellm_response_headers = httpx.Headers({"Retry-After": "7"})  # type: ignore[attr-defined]
    mapped = from_litellm(exc, model=MODEL)
    assert isinstance(mapped, RateLimitError)
    assert mapped.retry_after == 7.0


def test_retry_after_as_an_http_date() -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    mapped = from_litellm(_rate_limit({"Retry-After": when}), model=MODEL)
    assert isinstance(mapped, RateLimitError)
    assert mapped.retry_after is not None
    assert 25 <= mapped.retry_after <= 30


def test_a_past_retry_date_means_now() -> None:
    when = email.utils.formatdate(time.time() - 60, usegmt=True)
    mapped = from_litellm(_rate_limit({"Retry-After": when}), model=MODEL)
    assert isinstance(mapped, RateLimitError)
    assert mapped.retry_after == 0.0


# --- retryable ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (RateLimitError("r"), True),
        (ModelTimeoutError("t"), True),
        (ProviderUnavailableError("p"), True),
        (BadRequestError("b"), False),
        (AuthenticationError("a"), False),
        (ContextWindowExceededError("c"), False),
        (ContentPolicyError("c"), False),
        (OutputValidationError("o"), False),
        (ToolLoopError("t"), False),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(value),
)
def test_retryable_follows_the_hierarchy(error: ModelError, retryable: bool) -> None:
    assert error.retryable is retryable
    assert isinstance(error, TransientModelError if retryable else PermanentModelError)
    assert isinstance(error, DelegateError)


def test_a_task_timeout_is_retried_like_a_transient_error() -> None:
    assert TaskTimeoutError.retryable is True
    assert not issubclass(TaskTimeoutError, ModelError)


def test_rate_limit_keeps_its_hint() -> None:
    error = RateLimitError("slow down", model="m", retry_after=2.5)
    assert (error.model, error.retry_after, str(error)) == ("m", 2.5, "slow down")


# --- did_you_mean ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "choices", "hint"),
    [
        ("serach", ["search", "write"], " (did you mean 'search'?)"),
        ("writer", ["search", "write"], " (did you mean 'write'?)"),
        ("xyz", ["search", "write"], ""),
        ("search", [], ""),
        ("summarise", iter(["summarize", "search"]), " (did you mean 'summarize'?)"),
    ],
)
def test_did_you_mean(name: str, choices: Any, hint: str) -> None:
    assert did_you_mean(name, choices) == hint
