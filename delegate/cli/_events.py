"""`delegate run --events`: a run's events on stdout, one JSON object per line (ndjson).

Each line is `delegate.event_json(event)` (the schema: `delegate schema --events`), written as
the events come and flushed, so a web server can relay stdout over SSE as it is. stdout masks
every known credential in each line; text deltas need more, since a key the model writes may be
cut between two of them: `DeltaMasker` holds back the end of a task's text while it could be the
start of a credential, and lets it go once it cannot (or masked, once it is one).
"""

from __future__ import annotations

import functools
import json
import time
import urllib.parse
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import anyio.to_thread
import click

from delegate import _secrets
from delegate.cli._guard import stdout
from delegate.orchestrator.events import (
    Event,
    RunFinished,
    TaskCancelled,
    TaskFailed,
    TaskRetried,
    TaskSucceeded,
    TaskTextDelta,
    TaskWaiting,
)

if TYPE_CHECKING:
    from delegate.orchestrator.approval import ApprovedPlan
    from delegate.orchestrator.run import RunResult
    from delegate.workflows.runtime import CompiledWorkflow

__all__ = ["DeltaMasker", "stream_events"]

# The events after which a task's attempt streams no more text: what it held back goes out.
_ATTEMPT_ENDS = (TaskSucceeded, TaskFailed, TaskRetried, TaskCancelled, TaskWaiting)

_Key = tuple[str | None, int]


class DeltaMasker:
    """Masks known credentials in text deltas, per task and attempt, whatever the cuts.

    `feed` returns the deltas to show for one that arrived: its text, less an end that may be
    the beginning of a credential (kept until the next delta decides), masked. `flush` returns
    what was kept back once an attempt ends.

    Args:
        secrets: the values to mask (default: every credential delegate knows now).
    """

    def __init__(self, secrets: frozenset[str] | None = None) -> None:
        values = _secrets.known() if secrets is None else secrets
        self._extra = () if secrets is None else tuple(secrets)  # masked besides the known
        # The forms `redact` masks: raw, JSON-escaped and URL-encoded.
        forms = {
            form
            for value in values
            for form in (value, json.dumps(value)[1:-1], urllib.parse.quote(value, safe=""))
        }
        self._forms = tuple(sorted(forms, key=len, reverse=True))
        self._held: dict[_Key, TaskTextDelta] = {}

    def feed(self, delta: TaskTextDelta) -> list[TaskTextDelta]:
        """What to show now of `delta` (and of what was kept back before it)."""
        if not self._forms:
            return [delta]
        key = (delta.task_id, delta.attempt)
        kept = self._held.pop(key, None)
        text = delta.text if kept is None else kept.text + delta.text
        cut = self._safe_end(text)
        if cut < len(text):
            self._held[key] = _with_text(delta, text[cut:])
        return [_with_text(delta, _secrets.redact(text[:cut], self._extra))] if cut else []

    def flush(self, task_id: str | None = None, *, every: bool = False) -> list[TaskTextDelta]:
        """What was kept back of `task_id`'s attempts (of all of them with `every`), masked."""
        keys = [key for key in self._held if every or key[0] == task_id]
        return [
            _with_text(kept, _secrets.redact(kept.text, self._extra), at=time.time())
            for kept in (self._held.pop(key) for key in keys)
        ]

    def _safe_end(self, text: str) -> int:
        """Where `text` can be cut: before the earliest end that a credential may begin with,
        and never inside a whole credential (which then goes out whole, to be masked)."""
        floor = 0
        while True:
            cut = self._partial_from(text, floor)
            whole = self._across(text, cut)
            if whole is None:
                return cut
            floor = whole  # past the whole one; an end after it may still begin another

    def _partial_from(self, text: str, floor: int) -> int:
        """The earliest position from `floor` where the rest of `text` begins a credential."""
        cut = len(text)
        for form in self._forms:
            first = form[0]
            start = text.find(first, max(floor, len(text) - len(form) + 1))
            while 0 <= start < cut:
                if form.startswith(text[start:]):
                    cut = start
                    break
                start = text.find(first, start + 1)
        return cut

    def _across(self, text: str, cut: int) -> int | None:
        """The end of a whole credential that `cut` would split, if any."""
        for form in self._forms:
            found = text.find(form, max(0, cut - len(form) + 1))
            if 0 <= found < cut < found + len(form):
                return found + len(form)
        return None


def _with_text(delta: TaskTextDelta, text: str, *, at: float | None = None) -> TaskTextDelta:
    return TaskTextDelta(
        run_id=delta.run_id,
        at=delta.at if at is None else at,
        task_id=delta.task_id,
        agent=delta.agent,
        attempt=delta.attempt,
        text=text,
    )


def _shown(event: Event, masker: DeltaMasker) -> list[Event]:
    """The events to write for `event`: a delta as the masker lets it go; before an attempt's
    (or the run's) end, the text held back of it."""
    if isinstance(event, TaskTextDelta):
        return list(masker.feed(event))
    if isinstance(event, _ATTEMPT_ENDS):
        return [*masker.flush(event.task_id), event]
    if isinstance(event, RunFinished):
        return [*masker.flush(every=True), event]
    return [event]


async def stream_events(
    compiled: CompiledWorkflow,
    inputs: Mapping[str, Any],
    *,
    run_id: str,
    plan: ApprovedPlan | None = None,
) -> RunResult[Any]:
    """Run the workflow as `run_workflow` does, writing each of its events to stdout as one
    line of JSON (`delegate.event_json`), credentials masked.

    The lines are written in a worker thread, all that are waiting at once, then flushed: a
    slow reader of stdout never holds the run up. Its events wait in the stream, and past the
    stream's bound its text deltas are dropped (how many is said on stderr).
    """
    from delegate.orchestrator.stream import RunStream, event_json
    from delegate.workflows.runtime import run_workflow

    out = stdout()
    masker = DeltaMasker()

    def write(lines: list[str]) -> None:
        out.write("".join(lines))
        out.flush()

    def line(event: Event) -> str:
        return json.dumps(event_json(event), ensure_ascii=False, allow_nan=False) + "\n"

    start = functools.partial(run_workflow, compiled, inputs, run_id=run_id, plan=plan)
    lines: list[str] = []
    try:
        async with RunStream(compiled.orchestrator.events, run_id, start) as events:
            async for event in events:
                lines.extend(line(shown) for shown in _shown(event, masker))
                if lines and not events.buffered:  # nothing else waits: write what there is
                    await anyio.to_thread.run_sync(write, lines)
                    lines = []
    finally:
        # The run ended, or stopped on an error or a signal: what is left is written at once.
        lines.extend(line(shown) for shown in masker.flush(every=True))
        if lines:
            write(lines)
    if events.dropped_deltas:
        click.echo(
            f"{events.dropped_deltas} text deltas were dropped: stdout was read too slowly",
            err=True,
        )
    return events.result
