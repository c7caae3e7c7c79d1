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
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

from delegate import _secrets

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger, Processor


__all__ = [
    "LITELLM_LOGGERS",
    "configure_logging",
    "get_logger",
    "redact_secrets",
    "redact_text",
    "route_litellm_logging",
]

LITELLM_LOGGERS = ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "litellm")
"""The stdlib loggers litellm writes to."""

MASK = _secrets.MASK

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
        values = {**self._values, **values}
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
