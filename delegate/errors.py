"""Every error delegate raises, and the one place provider errors are mapped onto them.

```
DelegateError                      base of everything raised on purpose
├── ConfigError                    the user's own mistake in code (bad argument, unknown name)
│   ├── GraphError                 duplicate id, unknown dependency, cycle, undefined placeholder
│   ├── TemplateError              a prompt template that does not parse or render, or exceeds the
│   │                              sandbox's limits (loop steps, sizes, numbers)
│   ├── MemoryInputError           a memory namespace, key, value, tag or text that cannot be stored
│   │                              (.field)
│   ├── PriceUnknownError          a model with no known price under a usd budget
│   └── WorkflowError              a workflow file with problems (.problems .path .line .col)
├── BudgetExceeded                 a call does not fit a budget (.scope .unit .limit .spent)
├── PlanInvalid                    the planner's plan was still invalid after its last attempt
├── MCPServerError                 an MCP server could not be started, listed or reached
│                                  (.server .stderr)
├── JSONInputError                 JSON from a model or an input: malformed, too large or too deep
│                                  (.reason; also a ValueError)
├── StoreError                     the database cannot be opened, migrated, read or written
│   ├── RunExistsError             execute() with a run id the store already has (→ resume)
│   ├── RunLeasedError             resume of a run another live process owns (.run_id .owner)
│   └── CorruptRecordError         a row whose JSON does not parse (.table .row .column)
├── ModelRequestsBlocked           a real provider call while requests are blocked (tests)
├── ModelError                     a model call failed            (.model, .retryable)
│   ├── FallbackFailed             every model of a FallbackModel failed (.errors)
│   ├── TransientModelError        worth retrying with backoff
│   │   ├── RateLimitError         429                            (.retry_after)
│   │   ├── ModelTimeoutError      the call took too long
│   │   └── ProviderUnavailableError  5xx, connection refused or reset
│   └── PermanentModelError        retrying the same call cannot help
│       ├── ModelSetupError        never sent: SDK not installed, no credentials, unknown model
│       ├── BadRequestError        400/404/422: the request itself is wrong
│       ├── AuthenticationError    401/403: missing or wrong credentials
│       ├── ContextWindowExceededError  the prompt does not fit the model
│       ├── ContentPolicyError     the provider refused the content
│       ├── OutputValidationError  a structured answer did not validate, even after a re-ask
│       ├── ToolLoopError          the agent kept calling tools past its round limit
│       └── VerificationFailed     a judge rejected the answer, after a re-ask and the fallback
├── TaskTimeoutError               a task ran past its own timeout (retried like a transient error)
├── TaskNotSucceeded               result[task] of a task that did not succeed (.task_id .status);
│                                  also a LookupError
└── ApprovalPending                a tool call waits for a human's decision (.tools); in a run the
                                   task pauses instead (the run ends "waiting")
```

Messages name the thing and say what to do about it; constructors only store context.

Every `ModelError` says how far its request got (`.delivery`), which is what a budget charges:
"not_sent" (it never left: released), "refused" (the provider answered with an error and no
usage: one call, no tokens) or "unknown" (it may have been processed: charged at its reservation).
"""

from __future__ import annotations

import datetime
import difflib
import email.utils
import re
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from delegate import _secrets

if TYPE_CHECKING:
    from delegate.workflows.problems import Problem

__all__ = [
    "ApprovalPending",
    "AuthenticationError",
    "BadRequestError",
    "BudgetExceeded",
    "BudgetUnit",
    "ConfigError",
    "ContentPolicyError",
    "ContextWindowExceededError",
    "CorruptRecordError",
    "DelegateError",
    "Delivery",
    "FallbackFailed",
    "GraphError",
    "JSONInputError",
    "MCPServerError",
    "MemoryInputError",
    "ModelError",
    "ModelRequestsBlocked",
    "ModelSetupError",
    "ModelTimeoutError",
    "OutputValidationError",
    "PermanentModelError",
    "PlanInvalid",
    "PriceUnknownError",
    "ProviderUnavailableError",
    "RateLimitError",
    "RunExistsError",
    "RunLeasedError",
    "StoreError",
    "TaskNotSucceeded",
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


class MemoryInputError(ConfigError):
    """A memory namespace, key, value, tag or text that cannot be stored, refused before the
    database sees it (so SQLite and PostgreSQL refuse the same things the same way).

    Attributes:
        field: what was refused: "namespace", "key", "value", "tags", "text", "task_id",
            "prefix", "query", "limit", "run_id" or "workflow".
    """

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


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


class RunLeasedError(StoreError):
    """A run another process owns (its lease is live): it cannot be resumed or run here too.

    Attributes:
        run_id: the run.
        owner: who holds it: "pid 123 on host h (renewed 2 s ago, expires in 28 s)".
    """

    def __init__(self, message: str, *, run_id: str, owner: str) -> None:
        super().__init__(message)
        self.run_id, self.owner = run_id, owner


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


JSONProblem: TypeAlias = Literal["syntax", "size", "depth"]


class JSONInputError(DelegateError, ValueError):
    """JSON from outside (a model's answer, tool arguments, a run input) that is not valid JSON,
    is larger than its limit, or nests deeper than its limit. Also a `ValueError`, as
    `json.JSONDecodeError` is.

    Attributes:
        reason: "syntax", "size" or "depth".
        detail: the problem without its subject, for messages that name the text their own way:
            "not valid JSON (Expecting value: line 1 column 1 (char 0))", "nested more than 100
            levels deep", "20,000,000 characters long, more than the limit of 16,000,000".
    """

    def __init__(self, message: str, *, reason: JSONProblem, detail: str = "") -> None:
        super().__init__(message)
        self.reason = reason
        self.detail = detail or message


class ModelRequestsBlocked(DelegateError):
    """A real provider call was attempted while requests are blocked (see `delegate.testing`)."""


Delivery: TypeAlias = Literal["not_sent", "refused", "unknown"]
"""How far a failed request got: what a budget charges for it.

- "not_sent": it provably never left the process (refused connection, missing SDK or
  credentials, an unknown model): nothing is charged.
- "refused": the provider answered with an error and reported no usage (400, 401, 429, ...):
  one call is counted, no tokens or money.
- "unknown": it may have reached the provider and been processed (a timeout, a cancellation, a
  dropped connection, a 5xx, an error mid-stream): charged at its reservation, as unconfirmed.
"""


class ModelError(DelegateError):
    """A model call failed.

    Attributes:
        model: the model the call went to ("" when unknown).
        retryable: whether the same call may succeed if sent again later.
        delivery: how far the request got (see `Delivery`); each class has a default.
    """

    retryable = False
    delivery: Delivery = "unknown"

    def __init__(self, message: str, *, model: str = "", delivery: Delivery | None = None) -> None:
        super().__init__(message)
        self.model = model
        if delivery is not None:
            self.delivery = delivery


class FallbackFailed(ModelError):
    """Every model of a `FallbackModel` failed; `errors` holds each one's error, in order.

    It is as retryable as the errors are: retryable when every one of them was (all rate-limited,
    say), with the shortest `retry_after` they gave; and it says how far its requests got by the
    furthest of theirs.
    """

    def __init__(self, message: str, errors: Sequence[Exception]) -> None:
        # Errors that are not ModelErrors (a custom `fallback_on`) may have reached the model.
        deliveries = {getattr(error, "delivery", "unknown") for error in errors}
        delivery: Delivery = "not_sent"
        if "unknown" in deliveries:
            delivery = "unknown"
        elif "refused" in deliveries:
            delivery = "refused"
        model = getattr(errors[0], "model", "") if errors else ""
        super().__init__(message, model=model if isinstance(model, str) else "", delivery=delivery)
        self.errors = tuple(errors)
        self.retryable = bool(errors) and all(getattr(e, "retryable", False) for e in errors)
        hints = [h for e in errors if (h := getattr(e, "retry_after", None)) is not None]
        self.retry_after: float | None = min(hints) if self.retryable and hints else None


class TransientModelError(ModelError):
    """A failure worth retrying: rate limits, timeouts, an unavailable provider."""

    retryable = True


class RateLimitError(TransientModelError):
    """The provider answered 429. `retry_after` (seconds) is its hint, when it gave one."""

    delivery: Delivery = "refused"

    def __init__(
        self,
        message: str,
        *,
        model: str = "",
        retry_after: float | None = None,
        delivery: Delivery | None = None,
    ) -> None:
        super().__init__(message, model=model, delivery=delivery)
        self.retry_after = retry_after


class ModelTimeoutError(TransientModelError):
    """The call did not finish within its timeout."""


class ProviderUnavailableError(TransientModelError):
    """The provider could not be reached or answered with a server error (5xx)."""


class PermanentModelError(ModelError):
    """A failure that sending the same request again cannot fix."""

    delivery: Delivery = "refused"


class ModelSetupError(PermanentModelError):
    """The call could not be made as set up, so it was never sent: the provider's SDK is not
    installed, its credentials are missing, or the model name is not one litellm can route."""

    delivery: Delivery = "not_sent"


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


class TaskNotSucceeded(DelegateError, LookupError):
    """`RunResult[task]` of a task that failed, was skipped or was cancelled: it has no output.

    Attributes:
        task_id: the task.
        status: "failed", "skipped" or "cancelled".
        error: why, as the task's result says.
    """

    def __init__(self, task_id: str, status: str, error: str | None) -> None:
        why = f": {error}" if error else ""
        super().__init__(
            f"task {task_id!r} has no output: it {status}{why}; check result.status or "
            "result.failed before reading outputs, or use result.task(handle).output (None)"
        )
        self.task_id, self.status, self.error = task_id, status, error


class ApprovalPending(DelegateError):
    """A tool that requires approval was called and no decision exists for the call yet.

    Inside an orchestrator run this never reaches the caller: the task pauses ("waiting"), the
    run ends "waiting" with the calls in `RunResult.pending`, and `Orchestrator.resume(run_id,
    decisions=...)` continues it. `Agent.run` outside a run raises it, since it cannot pause.

    Attributes:
        tools: the names of the tools that wait for a decision.
        paused: where the agent stopped (its conversation and the round of tool calls), for the
            orchestrator to store and continue; not for users to read.
    """

    def __init__(self, message: str, *, tools: Sequence[str], paused: object) -> None:
        super().__init__(message)
        self.tools, self.paused = tuple(tools), paused


class MCPServerError(DelegateError):
    """An MCP server that could not be started, listed or reached; the task that needed it
    fails (its tools' own errors go back to the model instead).

    Attributes:
        server: the server's name.
        stderr: the end of what a stdio server wrote to stderr (secrets masked), or "".
    """

    def __init__(self, message: str, *, server: str, stderr: str = "") -> None:
        super().__init__(message)
        self.server, self.stderr = server, stderr


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

    Every credential delegate knows (`delegate._secrets`) is masked from the message, and `exc`
    is chained as the cause only when nothing in its chain holds one.
    """
    module = sys.modules.get("litellm.exceptions")
    message = f"{model or 'model'}: {type(exc).__name__}: {exc}"
    chain = _chain(exc)
    mapped: ModelError | None = _setup_error(exc, chain, model)
    if mapped is None:
        if module is None:
            mapped = _by_status(exc, message, model)
        else:
            mapped = _by_class(exc, message, model, module)
        if isinstance(mapped, ProviderUnavailableError) and _never_connected(chain):
            mapped.delivery = "not_sent"
    mapped.__cause__ = exc
    # The one redaction of provider errors: keys masked, a cause holding one not chained.
    return _secrets.scrub_error(mapped)


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc` and every exception it was raised from (cause or context), each once, bounded."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(chain) < 32 and all(current is not c for c in chain):
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


# Exceptions (by class name, anywhere in the chain) raised when no connection was ever made, so
# no request reached the provider: refused, unreachable host, DNS failure, TLS handshake failure.
_NOT_CONNECTED = frozenset(
    {
        "ConnectionRefusedError",
        "ConnectError",  # httpx: the TCP connect or TLS handshake failed
        "ClientConnectorError",  # aiohttp, likewise
        "ClientConnectorDNSError",
        "ClientConnectorCertificateError",
        "gaierror",
    }
)

# Raised by litellm or the provider's SDK before sending, for credentials that are not there.
_NO_CREDENTIALS = frozenset(
    {"NoCredentialsError", "PartialCredentialsError", "DefaultCredentialsError"}
)
_MISSING_KEY = re.compile(
    r"missing (?:\w+ )?(?:api[ _]key|credentials)|api_key client option must be set",
    re.IGNORECASE,
)


def _never_connected(chain: list[BaseException]) -> bool:
    return any(type(item).__name__ in _NOT_CONNECTED for item in chain)


def _setup_error(exc: BaseException, chain: list[BaseException], model: str) -> ModelError | None:
    """A `ModelSetupError` when the call failed before it could be sent, else None."""
    name = model or "model"
    for item in chain:
        if isinstance(item, ImportError):
            missing = item.name or str(item)
            return ModelSetupError(
                f"{name}: the provider's SDK is not installed (cannot import {missing!r}); "
                f"install the package litellm needs for this provider (e.g. pip install "
                f"{_PIP_NAMES.get(missing.split('.')[0], missing.split('.')[0])})",
                model=model,
            )
    if any(type(item).__name__ in _NO_CREDENTIALS for item in chain) or any(
        _MISSING_KEY.search(str(item)) for item in chain[:4]
    ):
        return ModelSetupError(
            f"{name}: no credentials for this provider: {type(exc).__name__}: {exc} — set the "
            f"provider's API key environment variable ({_key_variable(model)}) or pass api_key=",
            model=model,
        )
    if "LLM Provider NOT provided" in str(exc):
        return ModelSetupError(
            f"{name}: litellm does not know which provider serves this model; name it with its "
            "provider prefix, e.g. 'openai/gpt-4o-mini' or 'anthropic/claude-haiku-4-5'",
            model=model,
        )
    return None


_PIP_NAMES = {"google": "google-auth", "boto3": "boto3", "botocore": "boto3"}

_KEY_VARIABLES = {
    "openai": "OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "gemini": "GEMINI_API_KEY",
    "azure": "AZURE_API_KEY",
    "bedrock": "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
    "groq": "GROQ_API_KEY",
    "mistral": "MISTRAL_API_KEY",
    "deepseek": "DEEPSEEK_API_KEY",
    "openrouter": "OPENROUTER_API_KEY",
    "together_ai": "TOGETHERAI_API_KEY",
    "vertex_ai": "GOOGLE_APPLICATION_CREDENTIALS",
}


def _key_variable(model: str) -> str:
    provider = model.partition("/")[0] if "/" in model else "openai"
    return _KEY_VARIABLES.get(provider, f"{provider.upper()}_API_KEY")


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
    # An answer with a 4xx status was refused by the provider; anything else may have got through.
    answered = isinstance(status, int) and 400 <= status < 500
    return PermanentModelError(message, model=model, delivery="refused" if answered else "unknown")
