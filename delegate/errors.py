"""Every error delegate raises, and the one place provider errors are mapped onto them.

```
DelegateError                      base of everything raised on purpose
├── ConfigError                    the user's own mistake in code (bad argument, unknown name)
│   ├── GraphError                 duplicate id, unknown dependency, cycle, undefined placeholder
│   ├── TemplateError              a prompt template that does not render
│   ├── PriceUnknownError          a model with no known price under a usd budget
│   └── WorkflowError              a workflow file with problems (.problems .path .line .col)
├── BudgetExceeded                 a call does not fit a budget (.scope .unit .limit .spent)
├── PlanInvalid                    the planner's plan was still invalid after its last attempt
├── StoreError                     the database cannot be opened, migrated, read or written
│   ├── RunExistsError             execute() with a run id the store already has (→ resume)
│   └── CorruptRecordError         a row whose JSON does not parse (.table .row .column)
├── ModelRequestsBlocked           a real provider call while requests are blocked (tests)
├── ModelError                     a model call failed            (.model, .retryable)
│   ├── TransientModelError        worth retrying with backoff
│   │   ├── RateLimitError         429                            (.retry_after)
│   │   ├── ModelTimeoutError      the call took too long
│   │   └── ProviderUnavailableError  5xx, connection refused or reset
│   └── PermanentModelError        retrying the same call cannot help
│       ├── BadRequestError        400/404/422: the request itself is wrong
│       ├── AuthenticationError    401/403: missing or wrong credentials
│       ├── ContextWindowExceededError  the prompt does not fit the model
│       ├── ContentPolicyError     the provider refused the content
│       ├── OutputValidationError  a structured answer did not validate, even after a re-ask
│       ├── ToolLoopError          the agent kept calling tools past its round limit
│       └── VerificationFailed     a judge rejected the answer, after a re-ask and the fallback
└── TaskTimeoutError               a task ran past its own timeout (retried like a transient error)
```

Messages name the thing and say what to do about it; constructors only store context.
"""

from __future__ import annotations

import datetime
import difflib
import email.utils
import sys
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from delegate.workflows.problems import Problem

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "BudgetExceeded",
    "BudgetUnit",
    "ConfigError",
    "ContentPolicyError",
    "ContextWindowExceededError",
    "CorruptRecordError",
    "DelegateError",
    "GraphError",
    "ModelError",
    "ModelRequestsBlocked",
    "ModelTimeoutError",
    "OutputValidationError",
    "PermanentModelError",
    "PlanInvalid",
    "PriceUnknownError",
    "ProviderUnavailableError",
    "RateLimitError",
    "RunExistsError",
    "StoreError",
    "TaskTimeoutError",
    "TemplateError",
    "ToolLoopError",
    "TransientModelError",
    "VerificationFailed",
    "WorkflowError",
    "did_you_mean",
    "from_litellm",
]


class DelegateError(Exception):
    """Base class of every error delegate raises on purpose."""


class ConfigError(DelegateError):
    """A mistake in how delegate was set up: a bad argument, an unknown name, a negative limit."""


class GraphError(ConfigError):
    """A task graph that cannot run: duplicate id, unknown dependency, cycle, unknown agent."""


class TemplateError(ConfigError):
    """A prompt template that does not parse, names something undefined, or fails to render."""


BudgetUnit = Literal["tokens", "usd", "calls"]


class PriceUnknownError(ConfigError):
    """A model with no known price under a usd budget: refused, never taken as free.

    Attributes:
        model: the model whose price is unknown.
        scope: the label of the budget with a usd limit.
    """

    def __init__(self, message: str, *, model: str, scope: str) -> None:
        super().__init__(message)
        self.model, self.scope = model, scope


class WorkflowError(ConfigError):
    """A workflow file with problems; `str()` gives one `file:line:col: message` per line.

    Attributes:
        problems: every problem found, in file order (at least one).
        path: the file of the first problem.
        line: its line, 1-based.
        col: its column, 1-based.
    """

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))
        first = self.problems[0] if self.problems else None
        self.path = first.file if first else ""
        self.line = first.line if first else 0
        self.col = first.col if first else 0


class BudgetExceeded(DelegateError):
    """A model call does not fit a budget, so it was not sent.

    Attributes:
        scope: the budget's label ("run", "agent 'scout'", "task 'search'").
        unit: "tokens", "usd" or "calls".
        limit: the budget's limit in that unit.
        spent: what finished calls have spent.
        reserved: what calls in flight have reserved.
        requested: what this call needed (at the least, when its output could have shrunk).
    """

    def __init__(
        self,
        message: str,
        *,
        scope: str,
        limit: float,
        spent: float,
        requested: float,
        unit: BudgetUnit,
        reserved: float = 0.0,
    ) -> None:
        super().__init__(message)
        self.scope, self.unit, self.limit = scope, unit, limit
        self.spent, self.reserved, self.requested = spent, reserved, requested


class StoreError(DelegateError):
    """The database cannot be opened, migrated, read or written."""


class RunExistsError(StoreError):
    """`create_run` with an id that is already in the store.

    Attributes:
        run_id: the id that exists.
    """

    def __init__(self, message: str, *, run_id: str) -> None:
        super().__init__(message)
        self.run_id = run_id


class CorruptRecordError(StoreError):
    """A row whose JSON payload does not parse: it was changed outside delegate.

    Attributes:
        table: the table holding the row.
        row: which row ("run 'r1'", "namespace='n' key='k' version=2", ...).
        column: the column that does not parse.
    """

    def __init__(self, message: str, *, table: str = "", row: str = "", column: str = "") -> None:
        super().__init__(message)
        self.table, self.row, self.column = table, row, column


# -- validation and JSON ------------------------------------------------------------------------


class PlanInvalid(DelegateError):
    """The planner's plan was still invalid after its last attempt.

    Attributes:
        errors: every problem of the last attempt.
        attempts: how many plans were asked for.
    """

    def __init__(self, message: str, *, errors: Iterable[str], attempts: int) -> None:
        super().__init__(message)
        self.errors = list(errors)
        self.attempts = attempts


class ModelRequestsBlocked(DelegateError):
    """A real provider call was attempted while requests are blocked (see `delegate.testing`)."""


class ModelError(DelegateError):
    """A model call failed.

    Attributes:
        model: the model the call went to ("" when unknown).
        retryable: whether the same call may succeed if sent again later.
    """

    retryable = False

    def __init__(self, message: str, *, model: str = "") -> None:
        super().__init__(message)
        self.model = model


class TransientModelError(ModelError):
    """A failure worth retrying: rate limits, timeouts, an unavailable provider."""

    retryable = True


class RateLimitError(TransientModelError):
    """The provider answered 429. `retry_after` (seconds) is its hint, when it gave one."""

    def __init__(self, message: str, *, model: str = "", retry_after: float | None = None) -> None:
        super().__init__(message, model=model)
        self.retry_after = retry_after


class ModelTimeoutError(TransientModelError):
    """The call did not finish within its timeout."""


class ProviderUnavailableError(TransientModelError):
    """The provider could not be reached or answered with a server error (5xx)."""


class PermanentModelError(ModelError):
    """A failure that sending the same request again cannot fix."""


class BadRequestError(PermanentModelError):
    """The provider rejected the request as malformed (400, 404, 422)."""


class AuthenticationError(PermanentModelError):
    """Missing or wrong credentials (401, 403)."""


class ContextWindowExceededError(PermanentModelError):
    """The prompt and the requested output do not fit the model's context window."""


class ContentPolicyError(PermanentModelError):
    """The provider refused the content of the request or of its answer."""


class OutputValidationError(PermanentModelError):
    """A structured answer did not match its schema, even after the model was asked again."""


class ToolLoopError(PermanentModelError):
    """The model kept calling tools past the agent's `max_tool_rounds`."""


class VerificationFailed(PermanentModelError):
    """A judge (`verify=`) rejected the answer, after a re-ask with its feedback and the fallback.

    Attributes:
        agent: the worker whose answers were rejected.
        judge: the agent that judged them.
        feedback: the judge's feedback on the last answer.
        attempts: how many answers were judged and rejected.
    """

    def __init__(
        self,
        message: str,
        *,
        model: str = "",
        agent: str = "",
        judge: str = "",
        feedback: str = "",
        attempts: int = 0,
    ) -> None:
        super().__init__(message, model=model)
        self.agent, self.judge, self.feedback, self.attempts = agent, judge, feedback, attempts


class TaskTimeoutError(DelegateError):
    """A task ran longer than its timeout. The scheduler retries it like a transient error."""

    retryable = True


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ` (did you mean 'x'?)` when a close match exists, else an empty string."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _header_sets(exc: BaseException) -> Iterator[Mapping[str, str]]:
    # litellm keeps the provider's headers in `litellm_response_headers`; its exceptions'
    # own `response` is often a stand-in without them. `headers` is set by litellm's proxy.
    response = getattr(exc, "response", None)
    for headers in (
        getattr(exc, "litellm_response_headers", None),
        getattr(exc, "headers", None),
        getattr(response, "headers", None),
    ):
        if isinstance(headers, Mapping) and headers:
            yield headers


def _seconds(value: str) -> float | None:
    """A Retry-After value (seconds, or an HTTP date) as seconds from now, never negative."""
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return max((when - datetime.datetime.now(datetime.UTC)).total_seconds(), 0.0)


def _retry_after(exc: BaseException) -> float | None:
    """The provider's hint, in seconds: `retry-after-ms` (more precise) or `retry-after`."""
    for headers in _header_sets(exc):
        lowered = {str(name).lower(): str(value) for name, value in headers.items()}
        if "retry-after-ms" in lowered:
            try:
                return max(float(lowered["retry-after-ms"]) / 1000.0, 0.0)
            except ValueError:
                pass
        if "retry-after" in lowered:
            seconds = _seconds(lowered["retry-after"])
            if seconds is not None:
                return seconds
    return None


def from_litellm(exc: BaseException, *, model: str = "") -> ModelError:
    """Map an exception raised by litellm (or the OpenAI SDK beneath it) onto delegate's errors.

    The order of the checks matters: litellm's `Timeout` subclasses `APIConnectionError`, and
    `ContextWindowExceededError` / `ContentPolicyViolationError` subclass `BadRequestError`.
    litellm is never imported here: until delegate has imported it, `exc` cannot be one of its
    exceptions, and importing it (seconds, and without delegate's offline settings, so it would
    try to download its cost map) would not help. Such exceptions are mapped by `status_code`.
    """
    module = sys.modules.get("litellm.exceptions")
    message = f"{model or 'model'}: {type(exc).__name__}: {exc}"
    if module is None:
        mapped = _by_status(exc, message, model)
    else:
        mapped = _by_class(exc, message, model, module)
    mapped.__cause__ = exc
    return mapped


def _by_class(exc: BaseException, message: str, model: str, litellm: Any) -> ModelError:
    mapped: ModelError
    if isinstance(exc, litellm.ContextWindowExceededError):
        mapped = ContextWindowExceededError(
            message + " — shorten the prompt or dependency context, or use a model with a larger "
            "context window",
            model=model,
        )
    elif isinstance(exc, litellm.ContentPolicyViolationError):
        mapped = ContentPolicyError(message, model=model)
    elif isinstance(exc, litellm.RateLimitError):
        mapped = RateLimitError(message, model=model, retry_after=_retry_after(exc))
    elif isinstance(exc, litellm.Timeout):
        mapped = ModelTimeoutError(message, model=model)
    elif isinstance(
        exc,
        litellm.ServiceUnavailableError
        | litellm.InternalServerError
        | litellm.BadGatewayError
        | litellm.APIConnectionError,
    ):
        mapped = ProviderUnavailableError(message, model=model)
    elif isinstance(exc, litellm.AuthenticationError | litellm.PermissionDeniedError):
        mapped = AuthenticationError(
            message + " — check the provider's API key environment variable", model=model
        )
    elif isinstance(
        exc,
        litellm.BadRequestError | litellm.NotFoundError | litellm.UnprocessableEntityError,
    ):
        mapped = BadRequestError(message, model=model)
    else:
        mapped = _by_status(exc, message, model)
    return mapped


def _by_status(exc: BaseException, message: str, model: str) -> ModelError:
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and (status >= 500 or status in (408, 409)):
        return ProviderUnavailableError(message, model=model)
    if isinstance(status, int) and status == 429:
        return RateLimitError(message, model=model, retry_after=_retry_after(exc))
    return PermanentModelError(message, model=model)
