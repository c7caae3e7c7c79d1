"""Task journals: a multi-call task's answered calls are not sent (or paid) again when the task
is retried or its run resumed (`delegate.orchestrator._journal`), on SQLite and PostgreSQL."""

from __future__ import annotations

import functools
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import anyio
import pytest
from _backends import store_url  # noqa: F401
from sqlalchemy import update

from delegate import Agent, Orchestrator, RetryPolicy, TaskGraph
from delegate.agents.models import ModelRequest, ModelResponse, Usage
from delegate.errors import BadRequestError, RateLimitError
from delegate.memory import _steps
from delegate.memory.cache import response_to_json
from delegate.memory.records import RunRecord
from delegate.memory.schema import TaskStepRow
from delegate.memory.store import Store
from delegate.orchestrator._journal import RunJournal
from delegate.orchestrator.strategies import AdaptiveVotes, BestOfN, MixtureOfAgents, SelfRefine
from delegate.testing import FunctionModel, tool_call

pytestmark = pytest.mark.anyio

PRICE = 1.0  # USD per million tokens, in and out: every call has a known, nonzero cost
RETRY = RetryPolicy(max_retries=3, base_delay=0, max_delay=0)


def _counting(
    answer: Callable[[int, ModelRequest], Any], name: str = "worker-model"
) -> tuple[FunctionModel, list[str]]:
    """A fake model whose calls are counted apart from delegate: "sent" when a call reaches it,
    "answered" when it answers."""
    log: list[str] = []

    async def fn(request: ModelRequest) -> Any:
        number = log.count("sent") + 1
        log.append("sent")
        reply = answer(number, request)
        if isinstance(reply, BaseException):
            raise reply
        if callable(reply):
            reply = await reply()
        log.append("answered")
        return reply

    return FunctionModel(fn, input_price=PRICE, output_price=PRICE, name=name), log


def _watch_batches(store: Store) -> list[_steps.StepBatch | None]:
    """Every `steps=` the run's recorder passes to `write_batch` (the store still writes)."""
    seen: list[_steps.StepBatch | None] = []
    original = store.write_batch

    def write_batch(*args: Any, **kwargs: Any) -> tuple[int, int]:
        seen.append(kwargs.get("steps"))
        return original(*args, **kwargs)

    store.write_batch = write_batch  # type: ignore[method-assign]
    return seen


async def _journal_of(store: Store, run_id: str, *, rows: int) -> dict[str, Any]:
    """The run's stored journals, once they hold `rows` rows (polled: another thread writes)."""
    while True:
        stored = await anyio.to_thread.run_sync(store.get_steps, run_id)
        if sum(len(entries) for entries in stored.values()) >= rows:
            return stored
        await anyio.sleep(0.005)


# -- a retry after a transient error --------------------------------------------------------


async def test_a_transient_error_on_sample_4_retries_only_the_missing_sample(
    store_url: str,  # noqa: F811
) -> None:
    model, log = _counting(lambda n, _: RateLimitError("slow down") if n == 4 else "42")
    worker = Agent("worker", model)
    graph = TaskGraph()
    graph.add("vote", agent=worker, prompt="What is six times seven?", votes=5)
    async with Orchestrator(workers=[worker], memory=store_url, retry=RETRY) as orch:
        result = await orch.execute(graph, run_id="retried")
    assert result.status == "succeeded"
    assert result.output == "42"
    # Five answers for five samples, over two attempts: the retry sent only the one that failed.
    assert log.count("answered") == 5
    assert log.count("sent") == 6
    task = result.tasks["vote"]
    assert task.attempts == 2
    assert task.usage.calls == 6  # the 429 counts as a call, at no cost
    assert result.usage.calls == 6
    one = result.usage.cost_usd / 5
    assert task.usage.cost_usd == pytest.approx(5 * one)


async def test_a_judges_verdict_is_journaled_too(store_url: str) -> None:  # noqa: F811
    # The judge passes only a fixed answer: it rejects the draft, and the re-ask hits a 429.
    # The retry replays the draft and the rejection, and sends only the re-ask and its verdict.
    def work(n: int, request: ModelRequest) -> Any:
        if "reviewer rejected" not in request.messages[-1]["content"]:
            return f"draft {n}"
        return RateLimitError("busy") if n == 2 else f"fixed {n}"

    worker_model, worker_log = _counting(work)
    judge_model, judge_log = _counting(
        lambda n, request: {
            "passed": "fixed" in request.messages[-1]["content"],
            "feedback": "fix it",
        },
        name="judge-model",
    )
    worker = Agent("worker", worker_model)
    judge = Agent("judge", judge_model)
    graph = TaskGraph()
    graph.add("checked", agent=worker, prompt="Write a line.", verify=judge)
    async with Orchestrator(workers=[worker, judge], memory=store_url, retry=RETRY) as orch:
        result = await orch.execute(graph, run_id="judged")
    assert result.status == "succeeded"
    assert result.output == "fixed 3"
    assert worker_log.count("sent") == 3  # the draft, the failed re-ask, the re-ask again
    assert judge_log.count("sent") == 2  # the rejection (once) and the pass
    assert result.tasks["checked"].attempts == 2


# -- what is written, and when --------------------------------------------------------------


async def test_a_one_call_task_writes_no_journal_rows(store_url: str) -> None:  # noqa: F811
    model, log = _counting(lambda n, _: "done")
    worker = Agent("worker", model)
    graph = TaskGraph()
    for index in range(5):
        graph.add(f"t{index}", agent=worker, prompt=f"Task {index}.")
    store = Store.open(store_url)
    batches = _watch_batches(store)
    try:
        result = await Orchestrator(workers=[worker], memory=store).execute(graph, run_id="plain")
    finally:
        store.close()
    assert result.status == "succeeded"
    assert log.count("sent") == 5
    assert batches, "the run was written"
    assert all(steps is None for steps in batches)


async def test_answered_calls_are_written_and_the_journal_ends_with_the_task(
    store_url: str,  # noqa: F811
) -> None:
    gate = anyio.Event()
    released = anyio.Event()

    def answer(n: int, _: ModelRequest) -> Any:
        if n < 3:
            return "42"

        async def later() -> str:
            gate.set()
            await released.wait()
            return "42"

        return later

    model, _ = _counting(answer)
    worker = Agent("worker", model)
    graph = TaskGraph()
    graph.add("vote", agent=worker, prompt="What is six times seven?", votes=3)
    store = Store.open(store_url)
    batches = _watch_batches(store)
    orch = Orchestrator(workers=[worker], memory=store)
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(functools.partial(orch.execute, graph, run_id="written"))
            await gate.wait()
            stored = await _journal_of(store, "written", rows=2)
            released.set()
        left = store.get_steps("written")
    finally:
        store.close()
    # While the task ran, its two answered samples were in the store, as JSON...
    [(task_id, entries)] = stored.items()
    assert task_id == "vote"
    assert len(entries) == 2
    assert {response["text"] for response in entries.values()} == {"42"}
    # ...and the batch that stored its result ended its journal.
    assert left == {}
    ends = [steps for steps in batches if steps is not None and steps.forget]
    assert [list(steps.forget) for steps in ends] == [["vote"]]


async def test_a_credential_in_an_answer_is_redacted_in_the_journal(
    store_url: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret = "sk-journal-secret-0123456789abcdef"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    store = Store.open(store_url)
    try:
        store.create_run(RunRecord(id="r", inputs={}, graph={}, status="running"))
        response = ModelResponse(text=f"the key is {secret}", usage=Usage(calls=1), model="m")
        row = _steps.StepRow("t", "k" * 64, 0, response_to_json(response))
        store.write_batch("r", [], [], steps=_steps.StepBatch([row]))
        [(_, stored)] = store.get_steps("r")["t"].items()
    finally:
        store.close()
    assert secret not in stored["text"]
    assert stored["text"].startswith("the key is ")


# -- strategies and tool loops ----------------------------------------------------------------


def _strategy_answer(request: ModelRequest) -> Any:
    """Answers for every role of a strategy: scores, verdicts, drafts and revisions."""
    prompt = request.messages[-1]["content"]
    properties = (request.output_schema or {}).get("properties", {})
    if "score" in properties:
        return {"score": 7, "reason": "solid"}
    if "passed" in properties:  # a critique: the first draft is sent back once
        return {"passed": "revised" in prompt, "feedback": "add the unit"}
    if "reviewer rejected" in prompt:
        return "revised: 42 m"
    if request.sample is not None:  # votes that disagree: sampling goes on to the maximum
        return f"{40 + request.sample % 2}"
    return "draft: 42"


STRATEGIES: dict[str, dict[str, Any]] = {
    "adaptive_votes": {"votes": AdaptiveVotes(max_samples=6, min_samples=2, batch=2)},
    "best_of_n": {"strategy": BestOfN(n=3, judge="judge")},
    "mixture_of_agents": {"strategy": MixtureOfAgents(proposers=("p1", "p2"))},
    "self_refine": {"strategy": SelfRefine(rounds=2, critic="judge")},
}


async def _strategy_run(
    url: str, settings: dict[str, Any], fail_at: int | None
) -> tuple[Any, list[str]]:
    model, log = _counting(
        lambda n, request: RateLimitError("busy") if n == fail_at else _strategy_answer(request)
    )
    workers = [Agent(name, model) for name in ("worker", "judge", "p1", "p2")]
    graph = TaskGraph()
    graph.add("hard", agent=workers[0], prompt="How far? Answer with the unit.", **settings)
    async with Orchestrator(workers=workers, memory=url, retry=RETRY) as orch:
        result = await orch.execute(graph, run_id=f"strategy-{fail_at}")
    return result, log


@pytest.mark.parametrize("kind", sorted(STRATEGIES))
async def test_a_strategy_retried_sends_only_the_calls_that_did_not_answer(
    store_url: str,  # noqa: F811
    kind: str,
) -> None:
    settings = STRATEGIES[kind]
    clean, clean_log = await _strategy_run(store_url, settings, fail_at=None)
    calls = clean_log.count("answered")
    assert clean.status == "succeeded"
    assert calls == clean_log.count("sent") >= 3

    # The same task, its next-to-last call refused once with a 429: the retry replays every
    # answered call and sends the rest, so the model answers as often as in the clean run.
    result, log = await _strategy_run(store_url, settings, fail_at=calls - 1)
    assert result.status == "succeeded"
    assert result.output == clean.output
    assert result.tasks["hard"].attempts == 2
    assert log.count("answered") == calls
    assert log.count("sent") == calls + 1


async def test_a_tool_loop_retried_replays_its_first_rounds(store_url: str) -> None:  # noqa: F811
    runs: list[str] = []

    def lookup(city: str) -> str:
        """The distance to a city."""
        runs.append(city)
        return f"{city}: 42 km"

    def answer(n: int, request: ModelRequest) -> Any:
        if request.messages[-1].get("role") != "tool":
            return tool_call("lookup", city="Lyon")
        return RateLimitError("busy") if n == 2 else "42 km"

    model, log = _counting(answer)
    worker = Agent("worker", model, tools=[lookup])
    graph = TaskGraph()
    graph.add("trip", agent=worker, prompt="How far is Lyon?")
    async with Orchestrator(workers=[worker], memory=store_url, retry=RETRY) as orch:
        result = await orch.execute(graph, run_id="tools")
    assert result.status == "succeeded"
    assert result.output == "42 km"
    # Round one (the tool call) answered once; the tool runs again on the retry (tools are
    # not journaled: their effects are theirs), then the second round is sent.
    assert log == ["sent", "answered", "sent", "sent", "answered"]
    assert runs == ["Lyon", "Lyon"]


# -- identical requests, corrupt rows, failed tasks -------------------------------------------


class _FakeGate:
    """Stands in for a `CallGate`: counts the requests that reach it, numbers its answers."""

    def __init__(self) -> None:
        self.node = SimpleNamespace(usage=Usage(), model=None, attempts=1)
        self.account = SimpleNamespace(deltas=None, cache_hits=0, changes=0)
        self.sent = 0

    async def __call__(self, agent: Any, model: Any, request: ModelRequest) -> ModelResponse:
        self.sent += 1
        return ModelResponse(text=f"answer {self.sent}", usage=Usage(calls=1), model=model.name)


async def test_identical_requests_replay_their_answers_in_the_order_they_were_asked() -> None:
    journal = RunJournal()
    agent = Agent("worker", FunctionModel(lambda request: "unused", name="m"))
    request = ModelRequest([{"role": "user", "content": "Pick a number."}])
    first = _FakeGate()
    caller = journal.caller(first, "t")  # type: ignore[arg-type]
    answers = [(await caller(agent, agent.model, request)).text for _ in range(3)]
    assert answers == ["answer 1", "answer 2", "answer 3"]

    again = _FakeGate()
    caller = journal.caller(again, "t")  # type: ignore[arg-type]
    replayed = [await caller(agent, agent.model, request) for _ in range(4)]
    assert [r.text for r in replayed] == ["answer 1", "answer 2", "answer 3", "answer 1"]
    assert again.sent == 1  # only the fourth, which was never asked before
    assert [r.cached for r in replayed] == [True, True, True, False]
    assert all(r.usage == Usage() for r in replayed[:3])
    assert journal.replayed == again.account.cache_hits == 3


async def test_a_corrupt_journal_row_is_left_out(store_url: str) -> None:  # noqa: F811
    store = Store.open(store_url)
    try:
        store.create_run(RunRecord(id="r", inputs={}, graph={}, status="running"))
        good = ModelResponse(text="kept", usage=Usage(calls=1), model="m")
        rows = [
            _steps.StepRow("t", "a" * 64, 0, response_to_json(good)),
            _steps.StepRow("t", "b" * 64, 0, response_to_json(good)),
        ]
        store.write_batch("r", [], [], steps=_steps.StepBatch(rows))
        with store._connection(write=True) as conn:
            conn.execute(
                update(TaskStepRow).where(TaskStepRow.key == "b" * 64).values(response="{oops")
            )
        journals = store.get_steps("r")
    finally:
        store.close()
    assert list(journals["t"]) == [("a" * 64, 0)]


async def test_a_response_json_cannot_hold_is_not_journaled_and_the_batch_is_written(
    store_url: str,  # noqa: F811
) -> None:
    store = Store.open(store_url)
    try:
        store.create_run(RunRecord(id="r", inputs={}, graph={}, status="running"))
        good = response_to_json(ModelResponse(text="kept", usage=Usage(calls=1), model="m"))
        odd = {**good, "output": {"value": float("nan")}}
        rows = [_steps.StepRow("t", "a" * 64, 0, odd), _steps.StepRow("t", "b" * 64, 0, good)]
        store.write_batch("r", [], [], steps=_steps.StepBatch(rows))
        journals = store.get_steps("r")
    finally:
        store.close()
    assert list(journals["t"]) == [("b" * 64, 0)]


async def test_a_failed_task_ends_its_journal_and_runs_afresh_on_resume(
    store_url: str,  # noqa: F811
) -> None:
    failing = True

    def answer(n: int, _: ModelRequest) -> Any:
        if failing and n == 3:
            return BadRequestError("the request is malformed")
        return "42"

    model, log = _counting(answer)
    worker = Agent("worker", model)
    graph = TaskGraph()
    graph.add("vote", agent=worker, prompt="What is six times seven?", votes=3)
    async with Orchestrator(workers=[worker], memory=store_url, retry=RETRY) as orch:
        failed = await orch.execute(graph, run_id="failed")
        assert failed.status == "failed"
        assert orch_store_steps(store_url, "failed") == {}
        failing = False
        sent = log.count("sent")
        result = await orch.resume("failed")
    assert result.status == "succeeded"
    # A failed task is tried afresh: replaying the answers that failed it would fail it again.
    assert log.count("sent") - sent == 3


def orch_store_steps(url: str, run_id: str) -> dict[str, Any]:
    store = Store.open(url)
    try:
        return store.get_steps(run_id)
    finally:
        store.close()
