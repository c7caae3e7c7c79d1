"""Logging for delegate: structlog events, secrets masked, litellm's own loggers routed in.

A library must not configure logging for its host, so importing delegate configures nothing:
`get_logger` returns structlog's lazy logger, which follows whatever configuration the host
application sets up. The `delegate` CLI calls `configure_logging()`.

litellm logs through the stdlib loggers "LiteLLM", "LiteLLM Router" and "LiteLLM Proxy" with its
own stream handler. When delegate first imports litellm it calls `route_litellm_logging()`, which
replaces that handler with one that forwards each record, secrets masked, as a structlog event.

Every credential delegate knows (`delegate._secrets`: API keys given to models, the provider
keys in the environment) and whatever looks like one (`sk-...`, `Bearer ...`) is masked in every
event: by `redact_secrets` when structlog renders, by `Logger` itself when it falls back to
stdlib logging.

Every event carries the context it happened in: `run_id` (bound for the whole of a run),
`task_id` and `agent` (bound by the scheduler when a task attempt starts) and `model` (bound by
an agent when it sends a call). They are context variables named as structlog names its own
(`structlog_run_id`, ...), so `structlog.contextvars.merge_contextvars` and `get_contextvars`
find them in the host's own events too (a task function's, say); `Logger` adds them to
delegate's events itself, so they are there whatever processors the host configured. anyio
tasks and `anyio.to_thread` copy the context, so what a run binds reaches every task it starts
(threads started with `threading.Thread` do not: events from those name their run explicitly).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from delegate import _secrets

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger, Processor


__all__ = [
    "CONTEXT_KEYS",
    "LITELLM_LOGGERS",
    "bind_model",
    "bind_task",
    "bound_context",
    "bound_run",
    "bound_values",
    "configure_logging",
    "get_logger",
    "redact_secrets",
    "redact_text",
    "route_litellm_logging",
]

LITELLM_LOGGERS = ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "litellm")
"""The stdlib loggers litellm writes to."""

MASK = _secrets.MASK

CONTEXT_KEYS = ("run_id", "task_id", "agent", "model")
"""The keys delegate binds in the context of a run (see the module docstring)."""

# One variable per key, as structlog keeps them (`structlog.contextvars`): a run's tasks and calls
# set them with one `ContextVar.set` each (0.3 µs a task for three), where structlog's
# `bound_contextvars` copies and scans the whole context (9 µs a task, measured on a 2-core box).
# Ellipsis is structlog's "not bound".
_RUN_ID: ContextVar[Any] = ContextVar("structlog_run_id", default=...)
_TASK_ID: ContextVar[Any] = ContextVar("structlog_task_id", default=...)
_AGENT: ContextVar[Any] = ContextVar("structlog_agent", default=...)
_MODEL: ContextVar[Any] = ContextVar("structlog_model", default=...)
_CONTEXT = (_RUN_ID, _TASK_ID, _AGENT, _MODEL)


def bind_task(task_id: str, agent: str | None) -> None:
    """Bind a task attempt's `task_id` and `agent` (None: a function task) and unbind `model`.

    Called by a scheduler runner as it starts an attempt. Not undone afterwards: each runner is
    an anyio task of its own, whose context ends with the run, and it binds the next task's values
    before that task logs anything.
    """
    _TASK_ID.set(task_id)
    _AGENT.set(... if agent is None else agent)
    _MODEL.set(...)


def bind_model(name: str) -> None:
    """Bind the `model` an agent is sending its call to (until the next call, or the task's end).

    Only inside a run (`bound_run`), whose end undoes it: an agent run on its own leaves its
    caller's context as it was.
    """
    if _RUN_ID.get() is not ...:
        _MODEL.set(name)


@contextmanager
def bound_run(run_id: str) -> Iterator[None]:
    """`run_id` bound for the `with` block, and no task, agent or model of an outer run (a run
    started from a task function); the caller's context is as it was afterwards."""
    with bound_context(run_id=run_id, task_id=..., agent=..., model=...):
        yield


@contextmanager
def bound_context(**values: Any) -> Iterator[None]:
    """`values` (keys of `CONTEXT_KEYS`; `...` unbinds one) bound for the `with` block."""
    variables = dict(zip(CONTEXT_KEYS, _CONTEXT, strict=True))
    tokens = [(variables[key], variables[key].set(value)) for key, value in values.items()]
    try:
        yield
    finally:
        for variable, token in reversed(tokens):
            variable.reset(token)


def bound_values() -> dict[str, Any]:
    """What is bound in the current context, by key."""
    values = {}
    for key, variable in zip(CONTEXT_KEYS, _CONTEXT, strict=True):
        value = variable.get()
        if value is not ...:
            values[key] = value
    return values


# The structlog logger forwarded records are sent to. It must not be one of LITELLM_LOGGERS: a
# host that renders structlog through stdlib logging would send each record back to us forever.
_FORWARDED_AS = "delegate.litellm"


class Logger:
    """delegate's logger: structlog events when the host configured structlog, else stdlib logging.

    A library must stay quiet unless its host asks: unconfigured structlog prints every event to
    stdout, so until the host calls `structlog.configure` (or the CLI calls
    `configure_logging`) events go to the stdlib logger of the same name — silent below WARNING,
    and warnings reach stderr through logging's last-resort handler.
    """

    __slots__ = ("_name", "_values")

    def __init__(self, name: str, values: Mapping[str, Any]) -> None:
        self._name = name
        self._values = dict(values)

    def bind(self, **values: Any) -> Logger:
        """A logger that adds `values` to every event."""
        return Logger(self._name, {**self._values, **values})

    def debug(self, event: str, **values: Any) -> None:
        """Log `event` at DEBUG."""
        self._log(logging.DEBUG, "debug", event, values)

    def info(self, event: str, **values: Any) -> None:
        """Log `event` at INFO."""
        self._log(logging.INFO, "info", event, values)

    def warning(self, event: str, **values: Any) -> None:
        """Log `event` at WARNING."""
        self._log(logging.WARNING, "warning", event, values)

    def error(self, event: str, **values: Any) -> None:
        """Log `event` at ERROR."""
        self._log(logging.ERROR, "error", event, values)

    def _log(self, level: int, method: str, event: str, values: dict[str, Any]) -> None:
        # The context first: a value the call names itself wins (an agent's fallback, say).
        values = {**bound_values(), **self._values, **values}
        import structlog  # imported at the first event, not with delegate (it takes ~0.1 s)

        if structlog.is_configured():
            bound: FilteringBoundLogger = structlog.get_logger(self._name, logger_name=self._name)
            getattr(bound, method)(event, **values)
            return
        logger = logging.getLogger(self._name)
        if logger.isEnabledFor(level):
            masked = {
                key: MASK if is_secret_key(key) else _redact_value(v) for key, v in values.items()
            }
            detail = " ".join(f"{key}={value!r}" for key, value in masked.items())
            # Masked again as a whole: a repr (of an exception, say) can show a key too.
            logger.log(level, "%s", redact_text(f"{event} {detail}"))


def get_logger(name: str, **initial_values: Any) -> Logger:
    """The logger for module `name` (e.g. "delegate.scheduler"), with `initial_values` bound."""
    return Logger(name, initial_values)


is_secret_key = _secrets.is_secret_key


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every credential delegate knows, each of `secrets` and credential-looking
    substrings (`sk-...`, `Bearer ...`) masked.

    Known credentials and `secrets` are masked as whole tokens, and only when at least
    `delegate._secrets.MIN_LENGTH` characters long (see `delegate._secrets`).

    Args:
        text: any text that may be logged or shown.
        secrets: exact values to mask as well (e.g. the API key a model was built with).
    """
    return _secrets.redact(text, secrets, lookalikes=True)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, BaseException):  # rendered with str() or repr() later: do it now
        return redact_text(f"{type(value).__name__}: {value}")
    if isinstance(value, Mapping):
        return {
            key: (
                MASK
                if isinstance(key, str) and is_secret_key(key) and item
                else _redact_value(item)
            )
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(_redact_value(item) for item in value)
    return value


def redact_secrets(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask credentials in an event before it is rendered.

    Values of keys named like credentials (`api_key`, `authorization`, `token`, `secret`, ...)
    become "***" at any depth; strings anywhere that look like keys (`sk-...`, `Bearer ...`) are
    masked in place.
    """
    for key, value in list(event_dict.items()):
        if is_secret_key(key) and value:
            event_dict[key] = MASK
        else:
            event_dict[key] = _redact_value(value)
    return event_dict


class _StructlogForwarder(logging.Handler):
    """Forwards stdlib log records (litellm's) into structlog, secrets masked."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields: dict[str, Any] = {"logger_name": record.name}
            if record.exc_info and record.exc_info[0] is not None:
                fields["error"] = redact_text(
                    f"{record.exc_info[0].__name__}: {record.exc_info[1]}"
                )
            import structlog

            structlog.get_logger(_FORWARDED_AS).log(
                record.levelno, redact_text(record.getMessage()), **fields
            )
        except Exception:  # a logging failure must never break the call that logged
            self.handleError(record)


class _DropLoopChangeNotice(logging.Filter):
    """Drops litellm's "LoggingWorker: event loop changed" warning.

    litellm queues its success callbacks on the running event loop and warns when a new loop
    starts with some still queued — which every `run_sync` call and every test does. delegate
    registers no litellm callbacks, so nothing is lost.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            isinstance(record.msg, str)
            and record.msg.startswith("LoggingWorker: event loop changed")
        )


def route_litellm_logging(level: int = logging.WARNING) -> None:
    """Send litellm's log records to structlog instead of litellm's own stderr handler.

    Idempotent. Records below `level` are dropped; records are not propagated to the root logger
    (they would be printed twice by hosts that log the root).

    Args:
        level: the lowest stdlib level forwarded; WARNING by default (litellm's INFO and DEBUG
            records include whole requests).
    """
    for name in LITELLM_LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if not isinstance(handler, _StructlogForwarder):
                logger.removeHandler(handler)
        if not logger.handlers:
            forwarder = _StructlogForwarder()
            forwarder.addFilter(_DropLoopChangeNotice())
            logger.addHandler(forwarder)
        logger.setLevel(level)
        logger.propagate = False


def _redacted_traceback(stream: Any, exc_info: Any) -> None:
    """ConsoleRenderer's exception formatter: a plain traceback, secrets masked (the renderer
    formats tracebacks after every processor, so `redact_secrets` never sees them)."""
    import io

    import structlog

    buffer = io.StringIO()
    structlog.dev.plain_traceback(buffer, exc_info)
    stream.write(redact_text(buffer.getvalue()))


def configure_logging(level: str = "INFO", *, json: bool = False) -> None:
    """Configure structlog for an application (the `delegate` CLI); libraries should not call it.

    Events go to stderr, with a timestamp and level, credentials masked, rendered for a console
    or as one JSON object per line.

    Args:
        level: the lowest level shown: "DEBUG", "INFO", "WARNING", "ERROR" or "CRITICAL".
        json: render JSON lines instead of a human-readable console format.
    """
    numeric = logging.getLevelNamesMapping().get(level.upper())
    if numeric is None:
        from delegate.errors import ConfigError

        raise ConfigError(
            f"log level {level!r} is not a level; use DEBUG, INFO, WARNING, ERROR or CRITICAL"
        )
    import structlog

    processors: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if json:
        # Render tracebacks to text first, so that redaction sees them too.
        processors += [structlog.processors.format_exc_info, redact_secrets]
        processors.append(structlog.processors.JSONRenderer())
    else:
        processors += [
            redact_secrets,
            structlog.dev.ConsoleRenderer(
                colors=sys.stderr.isatty(), exception_formatter=_redacted_traceback
            ),
        ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
