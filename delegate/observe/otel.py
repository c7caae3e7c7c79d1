"""OpenTelemetry traces of runs: one setting turns them on.

    Orchestrator(tracing=True)                    # the global tracer provider (or OTLP from env)
    Orchestrator(tracing=provider)                # your TracerProvider
    Orchestrator(tracing=Tracing(capture_content=True))
    Orchestrator(tracing=otlp("http://localhost:4318"))   # Jaeger, Tempo, Langfuse, ...

A run is a tree of spans: the run, each plan revision (planned runs), each task (its retries
are events on it, with the attempt on every call span), each model request ("chat <model>",
with the OpenTelemetry GenAI attributes) and each tool call ("execute_tool <name>", MCP tools
included), and the final answer ("synthesis"). A resumed run's span links to the spans of the
run's earlier attempts (their ids are kept in the run's stored `run_started` event).

Prompts and answers are recorded only with `Tracing(capture_content=True)`, and then redacted
(`delegate._secrets.redact`), as are error messages: credentials never reach a span.

This module does not import OpenTelemetry: `import delegate` stays free of it, and with tracing
off nothing of it runs. The spans themselves are made in `delegate.observe._spans`.
"""

from __future__ import annotations

import functools
import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from delegate._secrets import register_headers, register_url
from delegate.errors import ConfigError

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import TracerProvider as AnyTracerProvider

    from delegate.observe._spans import RunTracer

__all__ = ["Tracing", "otlp", "tracer_of"]

_INSTALL = 'pip install "delegate[otel]"'
_TRACES_PATH = "/v1/traces"


@dataclass(frozen=True, slots=True)
class Tracing:
    """How a run is traced (`Orchestrator(tracing=Tracing(...))`).

    Attributes:
        provider: the OpenTelemetry `TracerProvider` spans go to. None: the global one when an
            SDK provider is installed there; else, when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
            `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, an OTLP/HTTP provider the SDK
            configures from the environment (`otlp()`); else the global one as it is.
        capture_content: record prompts and answers (`gen_ai.input.messages`,
            `gen_ai.output.messages`) and tool arguments and results, redacted. Off by default.
        service_name: the `service.name` of a provider delegate builds (the OTLP one from the
            environment); a provider you give keeps its own resource.
    """

    provider: AnyTracerProvider | None = None
    capture_content: bool = False
    service_name: str = "delegate"


def otlp(
    endpoint: str | None = None,
    headers: Mapping[str, str] | None = None,
    *,
    service_name: str = "delegate",
    timeout: float = 10.0,
) -> TracerProvider:
    """A tracer provider that sends spans in batches to an OTLP/HTTP endpoint.

    Args:
        endpoint: the collector's base URL ("http://localhost:4318", Langfuse's
            "https://cloud.langfuse.com/api/public/otel"); "/v1/traces" is appended unless the URL
            ends with it. None: the SDK reads `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
            `OTEL_EXPORTER_OTLP_ENDPOINT` (default http://localhost:4318).
        headers: sent with every export (an `Authorization` header, say); their values are
            masked as credentials everywhere delegate writes. None: `OTEL_EXPORTER_OTLP_HEADERS`.
        service_name: the spans' `service.name`.
        timeout: seconds an export may take.

    Returns:
        A `TracerProvider` with a `BatchSpanProcessor`; it is flushed when the process exits
        (call `force_flush()` to send what it holds sooner).

    Raises:
        ConfigError: the otel extra is not installed, or `endpoint` is not an http(s) URL.
    """
    _require()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    url = None if endpoint is None else _traces_url(endpoint)
    if headers is not None:
        if not isinstance(headers, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise ConfigError(
                f"otlp(headers=...) must map header names to str values, got {headers!r}"
            )
        register_headers(headers)
    if not isinstance(service_name, str) or not service_name:
        raise ConfigError(f"otlp(service_name=...) must be a non-empty str, got {service_name!r}")
    exporter = OTLPSpanExporter(
        endpoint=url, headers=None if headers is None else dict(headers), timeout=timeout
    )
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def tracer_of(setting: object) -> RunTracer | None:
    """The tracer of `Orchestrator(tracing=setting)`: None when tracing is off.

    Raises:
        ConfigError: `setting` is not a bool, a `TracerProvider` or a `Tracing`, or the otel
            extra is not installed.
    """
    if setting is None or setting is False:
        return None
    if setting is True:
        options = Tracing()
    elif isinstance(setting, Tracing):
        options = setting
    elif callable(getattr(setting, "get_tracer", None)):
        options = Tracing(provider=setting)  # type: ignore[arg-type]  # checked: a provider
    else:
        raise ConfigError(
            "tracing must be True (the global OpenTelemetry tracer provider), a TracerProvider "
            f"(e.g. delegate.observe.otlp(endpoint)) or delegate.Tracing(...), got {setting!r}"
        )
    if not isinstance(options.capture_content, bool):
        raise ConfigError(
            f"Tracing(capture_content=...) must be a bool, got {options.capture_content!r}"
        )
    _require()
    from delegate.observe._spans import RunTracer

    provider = options.provider or _default_provider(options.service_name)
    return RunTracer(provider, capture_content=options.capture_content)


def _require() -> None:
    try:
        import opentelemetry.sdk.trace  # noqa: F401  (only asked whether it is there)
    except ImportError as exc:
        raise ConfigError(
            f"tracing needs OpenTelemetry, which is not installed: {_INSTALL}"
        ) from exc


def _default_provider(service_name: str) -> AnyTracerProvider:
    """The global provider when one is installed; else OTLP from the environment when it names
    an endpoint; else the global (proxy) provider, which a later `set_tracer_provider` fills."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        return provider
    if os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    ):
        return _env_provider(service_name)
    return provider


@functools.cache
def _env_provider(service_name: str) -> TracerProvider:
    """One OTLP provider from the environment per service name, shared by the orchestrators
    that ask for it (each would otherwise start an export thread of its own)."""
    return otlp(service_name=service_name)


def _traces_url(endpoint: object) -> str:
    if isinstance(endpoint, str):
        parts = urllib.parse.urlsplit(endpoint.strip())
        if parts.scheme in ("http", "https") and parts.netloc:
            register_url(endpoint)
            path = parts.path.rstrip("/")
            if not path.endswith(_TRACES_PATH):
                path += _TRACES_PATH
            return urllib.parse.urlunsplit(parts._replace(path=path))
    raise ConfigError(
        f"the OTLP endpoint must be an http(s) URL such as http://localhost:4318, got {endpoint!r}"
    )
