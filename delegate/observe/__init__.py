"""Seeing runs: OpenTelemetry traces (`Orchestrator(tracing=...)`, `otlp`), and a run's report
as one self-contained HTML file (`report_html`, `stored_report_html`).

Nothing here imports OpenTelemetry until tracing is asked for; without the extra, asking for it
raises `ConfigError` naming `pip install "delegate[otel]"`.
"""

from delegate.observe.otel import Tracing, otlp
from delegate.observe.report import report_html, stored_report_html

__all__ = ["Tracing", "otlp", "report_html", "stored_report_html"]
