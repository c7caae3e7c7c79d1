"""Task journals: a multi-call task's finished model calls are not paid for twice.

A task that makes several model calls for one answer — votes, a judge, a strategy (best-of-n,
mixture-of-agents, self-refine), a tool loop — keeps, in a durable run, a journal of the calls
that got an answer. When the task is tried again (a retry after a transient error, or a resume
after a crash), each call already answered is answered from the journal, and only the missing
ones are sent. A plain one-call task has nothing to save and keeps no journal: it pays no store
write per call (`RunJournal.wants`).

It is a caller wrapper (`JournaledCaller`, around the task's `CallGate`), not a flag inside the
agent loop:

- a request is keyed by the sha256 of its canonical JSON (`delegate.memory.cache.cache_key`: the
  model, the messages, the tools, the output schema, the limits), plus its occurrence among the
  task's identical requests — vote samples ask the same thing, and get responses 0, 1, 2… in
  the order they are asked;
- an answered call is recorded when its response arrives, and its row is written in the run's
  next group commit (`RunRecorder`), the same transaction that writes the spend it caused, or a
  later one by the width of the one event-loop step between them (see below);
- a replay reserves and charges nothing, since the call was charged when it was made: a
  resumed run's restored spend counts it already (`RunAccount.restore`); the task's own usage
  gets the call's usage back when it was made before the resume, so the task still reports what
  its answer cost. A replay is counted as a cache hit is (`usage.cache_hits`).

Durability: the gate charges a call and the wrapper queues its row in one step of the event
loop, without an await between them, and the writer thread takes the queued rows after it reads
the spend. A commit that holds the charge therefore holds the row too, except when the writer
thread reads the spend in the instant between those two statements of the event loop: a crash
right after that commit would send the call again on resume and charge it again. The budget
still counts every call that was sent: no call is ever paid and not counted.

A journal ends (its rows deleted, in the batch that stores the task's result) when the task
succeeds, fails or is skipped: only a task that may still run again keeps one. A failed task
run again by a later resume starts afresh, since replaying the answers that failed it would
fail it again. Responses are stored as JSON (never pickle) and redacted like every other row.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from delegate._log import get_logger
from delegate.agents.models import ModelResponse, Usage
from delegate.errors import CorruptRecordError
from delegate.memory._steps import StepBatch, StepRow
from delegate.memory.cache import cache_key, response_from_json, response_to_json

if TYPE_CHECKING:
    from delegate.agents.agent import Agent
    from delegate.agents.models import Model, ModelRequest
    from delegate.orchestrator.calls import CallGate

__all__ = ["JournaledCaller", "RunJournal"]

log = get_logger("delegate.journal")

_ENDED = frozenset(("succeeded", "failed", "skipped"))
"""Task statuses after which a task is not run again: its journal ends."""


@dataclass(slots=True)
class _Entry:
    """One answered call: the response as this process got it, or as JSON from the store."""

    response: ModelResponse | None
    data: Mapping[str, Any] | None = None  # from the store (another process made the call)

    def replay(self) -> ModelResponse | None:
        """The response to give again; None when the stored one does not parse (send it)."""
        if self.response is None and self.data is not None:
            try:
                self.response = response_from_json(self.data)
            except CorruptRecordError as exc:
                log.warning("journal_entry_corrupt", error=str(exc))
                self.data = None
        return self.response


class RunJournal:
    """The journals of a durable run's multi-call tasks: answered calls, by task.

    Args:
        stored: what the store holds of the run's journals (`Store.get_steps`) when it is
            resumed: task id → (request key, occurrence) → response as JSON.

    The event loop records (`JournaledCaller`); the run's recorder takes what waits to be
    written (`take`), in its writer thread.
    """

    __slots__ = ("_lock", "_rows", "_tasks", "replayed")

    def __init__(
        self, stored: Mapping[str, Mapping[tuple[str, int], Mapping[str, Any]]] | None = None
    ) -> None:
        self._lock = threading.Lock()  # guards `_rows` (the writer thread takes them)
        self._rows: list[StepRow] = []
        self._tasks: dict[str, dict[tuple[str, int], _Entry]] = {
            task_id: {key: _Entry(None, data) for key, data in entries.items()}
            for task_id, entries in (stored or {}).items()
        }
        self.replayed = 0  # calls answered from a journal instead of sent

    @staticmethod
    def wants(votes: object, verify: object, strategy: object, tools: object) -> bool:
        """Whether a task attempt keeps a journal: when it makes several model calls per answer.

        Votes other than one (a number or an adaptive policy), a judge, a strategy, or tools (a
        tool loop asks the model again after each round): each call answered before a failure
        is money a retry would spend again. A plain call has nothing to save and skips it.
        """
        return votes != 1 or verify is not None or strategy is not None or bool(tools)

    def caller(self, gate: CallGate, task_id: str) -> JournaledCaller:
        """The caller of one attempt of `task_id`: replays its answered calls, records new ones."""
        return JournaledCaller(gate, self, self._tasks.setdefault(task_id, {}), task_id)

    def record(self, task_id: str, key: str, occurrence: int, response: ModelResponse) -> None:
        """Keep an answered call, for this process's retries and the store."""
        entries = self._tasks.setdefault(task_id, {})
        entries[(key, occurrence)] = _Entry(response)
        row = StepRow(task_id, key, occurrence, response_to_json(response))
        with self._lock:
            self._rows.append(row)

    def waiting(self) -> bool:
        """Whether rows wait to be written (read by the writer thread without the lock)."""
        return bool(self._rows)

    def take(self, tasks: Iterable[Any]) -> StepBatch | None:
        """What the next commit writes: the rows recorded since the last one, and the end of
        the journals of `tasks` (the commit's task rows) that ended; None when nothing.

        Called by the writer thread after it read the run's spend (see the module docstring).
        """
        if not self._tasks and not self._rows:  # a run of one-call tasks: nothing, at once
            return None
        ended = [
            row.task_id for row in tasks if row.status in _ENDED and row.task_id in self._tasks
        ]
        with self._lock:
            rows, self._rows = self._rows, []
        if not rows and not ended:
            return None
        if ended:
            gone = set(ended)
            for task_id in ended:
                self._tasks.pop(task_id, None)  # one step under the GIL: the loop reads others
            rows = [row for row in rows if row.task_id not in gone]
        return StepBatch(rows, ended)


class JournaledCaller:
    """A task attempt's `ModelCaller`: calls its journal answered are replayed, free; the others
    go through the task's `CallGate` and are recorded when answered."""

    __slots__ = ("_entries", "_seen", "gate", "journal", "task_id")

    def __init__(
        self,
        gate: CallGate,
        journal: RunJournal,
        entries: dict[tuple[str, int], _Entry],
        task_id: str,
    ) -> None:
        self.gate = gate
        self.journal = journal
        self.task_id = task_id
        self._entries = entries
        self._seen: dict[str, int] = {}  # request key -> identical requests asked so far

    async def __call__(
        self, agent: Agent[Any], model: Model, request: ModelRequest
    ) -> ModelResponse:
        """Answer from the journal when this request (and occurrence) was answered before,
        else through the gate, and record the answer."""
        try:
            key = cache_key(_identity(model), request)
        except (TypeError, ValueError):
            # No canonical JSON (an unusual schema value): never matched, never recorded.
            return await self.gate(agent, model, request)
        occurrence = self._seen.get(key, 0)
        self._seen[key] = occurrence + 1
        entry = self._entries.get((key, occurrence))
        if entry is not None:
            response = entry.replay()
            if response is not None:
                return self._replay(agent, request, entry, response)
        response = await self.gate(agent, model, request)
        self.journal.record(self.task_id, key, occurrence, response)
        return response

    def _replay(
        self, agent: Agent[Any], request: ModelRequest, entry: _Entry, response: ModelResponse
    ) -> ModelResponse:
        """Give an answered call's response again: nothing reserved or charged (it was, when it
        was made), the task's usage told of a call made by a process before this one."""
        node = self.gate.node
        account = self.gate.account
        if entry.data is not None:
            # Made before a resume: the run's restored spend has it, the task's usage not yet.
            node.usage += response.usage
            entry.data = None
        if node.model is None:
            node.model = response.model or None
        account.cache_hits += 1  # an answer from the store at no cost, as a cache hit is
        account.changes += 1
        self.journal.replayed += 1
        on_text = request.on_text
        if on_text is None and account.deltas is not None:
            on_text = account.deltas(self.task_id, agent.name, getattr(node, "attempts", 1))
        if on_text is not None and response.text:
            on_text(response.text)
        log.debug("journal_replayed", task_id=self.task_id, agent=agent.name)
        return dataclasses.replace(response, usage=Usage(), latency=0.0, cached=True)


def _identity(model: Model) -> str:
    """What names the server that answers: the model's name, and its base URL when it has one
    (as the call cache names it)."""
    base = getattr(model, "api_base", None)
    return model.name if not isinstance(base, str) or not base else f"{model.name} @ {base}"
