"""Streaming a run: `Orchestrator.stream`/`stream_resume`, its buffering, text deltas, the event
JSON and its schema, and `delegate run --events`."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import anyio
import jsonschema
import pytest
from _backends import store_url  # noqa: F401 - a fixture
from click.testing import CliRunner

from delegate import Agent, ConfigError, Orchestrator, TaskGraph
from delegate.agents.models import ModelRequest
from delegate.agents.retry import RetryPolicy
from delegate.cli import main
from delegate.cli._events import DeltaMasker
from delegate.errors import PermanentModelError, ProviderUnavailableError
from delegate.memory.store import Store
from delegate.orchestrator.events import (
    Event,
    PlanTaskAdded,
    RunFinished,
    TaskStarted,
    TaskTextDelta,
)
from delegate.orchestrator.stream import event_json, events_json_schema
from delegate.testing import FunctionModel

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "configs" / "events.schema.json"
DELTA = "task_text_delta"


def _echo(chunk_size: int = 4, **options: Any) -> FunctionModel:
    return FunctionModel(
        lambda request: f"answer to {_prompt(request)}", chunk_size=chunk_size, **options
    )


def _prompt(request: ModelRequest) -> str:
    return str(request.messages[-1]["content"])


def _graph(agent: str = "w") -> TaskGraph:
    graph = TaskGraph()
    a = graph.add("a", agent=agent, prompt="Do a")
    b = graph.add("b", agent=agent, prompt="Do b")
    graph.add("c", agent=agent, prompt="Do c", deps=[a, b])
    return graph


def _task_of(event: Event) -> str | None:
    return getattr(event, "task_id", None)


def _joined(events: list[Event]) -> dict[tuple[str | None, str, int], str]:
    texts: dict[tuple[str | None, str, int], str] = defaultdict(str)
    for event in events:
        if isinstance(event, TaskTextDelta):
            texts[event.task_id, event.agent, event.attempt] += event.text
    return dict(texts)


async def test_a_graph_streams_every_event_of_its_run_in_order() -> None:
    model = _echo()
    orch = Orchestrator(workers=[Agent("w", model)], memory=None)
    async with orch.stream(_graph(), run_id="r1") as events:
        seen = [event async for event in events]

    result = events.result
    assert result.status == "succeeded"
    assert {event.run_id for event in seen} == {"r1"}
    states = [event.kind for event in seen if event.kind != DELTA]
    assert (states[0], states[-1], len(states)) == ("run_started", "run_finished", 11)
    for task in "abc":
        chunks = math.ceil(len(result.tasks[task].output) / 4)
        assert [event.kind for event in seen if _task_of(event) == task] == [
            "task_queued",
            "task_started",
            *[DELTA] * chunks,
            "task_succeeded",
        ]
    at = {(event.kind, _task_of(event)): index for index, event in enumerate(seen)}
    assert at["task_queued", "c"] > max(at["task_succeeded", "a"], at["task_succeeded", "b"])
    finished = seen[-1]
    assert isinstance(finished, RunFinished)
    assert (finished.status, finished.output, finished.error) == ("succeeded", result.output, None)
    assert finished.output == result.tasks["c"].output  # a graph's output: its last task's
    assert events.dropped_deltas == 0


async def test_the_deltas_of_each_task_join_to_its_output() -> None:
    model = _echo(chunk_size=3)
    orch = Orchestrator(workers=[Agent("w", model)], memory=None)
    async with orch.stream(_graph()) as events:
        seen = [event async for event in events]

    outputs = {task.id: task.output for task in events.result.tasks.values()}
    assert _joined(seen) == {(task, "w", 1): outputs[task] for task in "abc"}
    assert all(len(e.text) <= 3 for e in seen if isinstance(e, TaskTextDelta))
    assert all(request.on_text is not None for request in model.requests)


async def test_a_retried_attempt_streams_under_its_own_attempt_number() -> None:
    def respond(request: ModelRequest) -> str:
        if len(model.requests) == 1:  # the first attempt is cut off mid-answer
            assert request.on_text is not None
            request.on_text("half an ")
            raise ProviderUnavailableError("connection reset", model="mini")
        return "whole answer"

    model = FunctionModel(respond, chunk_size=5, name="mini")
    orch = Orchestrator(
        workers=[Agent("w", model)], retry=RetryPolicy(max_retries=1, base_delay=0), memory=None
    )
    graph = TaskGraph()
    graph.add("a", agent="w", prompt="Do a")
    async with orch.stream(graph) as events:
        seen = [event async for event in events]

    assert events.result.tasks["a"].attempts == 2
    assert _joined(seen) == {("a", "w", 1): "half an ", ("a", "w", 2): "whole answer"}
    kinds = [(event.kind, getattr(event, "attempt", None)) for event in seen]
    assert kinds.index(("task_retried", 1)) > kinds.index((DELTA, 1))
    assert kinds.index(("task_started", 2)) < kinds.index((DELTA, 2))


# -- planned runs ------------------------------------------------------------------------------


def _plan_task(id: str, agent: str = "scout", deps: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"id": id, "agent": agent, "instructions": f"Do {id}.", "deps": list(deps)}


class Planning:
    """A reasoning model that answers plan requests from a list, and anything else "FINAL"."""

    def __init__(self, plans: list[dict[str, Any]]) -> None:
        self.plans = list(plans)
        self.plan_requests: list[ModelRequest] = []
        self.model = FunctionModel(self._respond, name="reasoner", chunk_size=7)

    def _respond(self, request: ModelRequest) -> str:
        if request.output_name == "Plan":
            self.plan_requests.append(request)
            return json.dumps(self.plans.pop(0))
        return "FINAL"


async def test_a_planned_run_streams_its_plan_tasks_and_its_replan() -> None:
    first = {
        "tasks": [
            _plan_task("facts"),
            _plan_task("history"),
            _plan_task("report", "writer", ("facts", "history")),
        ]
    }
    revised = {"tasks": [_plan_task("report_again", "writer", ("facts", "history"))]}
    planning = Planning([first, revised])

    def work(request: ModelRequest) -> str:
        task = _prompt(request).rsplit("Do ", 1)[-1].rstrip(".")
        if task == "report":
            raise PermanentModelError("cannot do report")
        return f"result of {task}"

    worker = FunctionModel(work, name="mini", chunk_size=6)
    orch = Orchestrator(
        planner=Agent("planner", planning.model),
        workers=[Agent("scout", worker), Agent("writer", worker)],
        memory=None,
    )
    async with orch.stream("Write a short report on bees.") as events:
        seen = [event async for event in events]

    result = events.result
    assert (result.status, result.output) == ("succeeded", "FINAL")
    added = [(e.revision, e.task_id, e.agent, e.deps) for e in seen if isinstance(e, PlanTaskAdded)]
    assert added == [
        (1, "facts", "scout", ()),
        (1, "history", "scout", ()),
        (1, "report", "writer", ("facts", "history")),
        (2, "report_again", "writer", ("facts", "history")),
    ]
    at = {(event.kind, _task_of(event)): index for index, event in enumerate(seen)}
    for _, task, _, _ in added:  # each task is announced before it is queued
        assert at["plan_task_added", task] < at["task_queued", task]
    plans = [(e.kind, getattr(e, "revision", None)) for e in seen if e.kind.startswith("plan_")]
    assert [kind for kind in plans if kind[0] != "plan_task_added"] == [
        ("plan_started", 1),
        ("plan_finished", 1),
        ("plan_started", 2),
        ("plan_finished", 2),
    ]
    assert at["synthesis_started", None] < at["run_finished", None] == len(seen) - 1
    # Workers' text per task; the final answer's under no task; the plan's JSON is not a delta
    # (the planner's request streams into the plan reader, as without a stream).
    assert _joined(seen) == {
        ("facts", "scout", 1): "result of facts",
        ("history", "scout", 1): "result of history",
        ("report_again", "writer", 1): "result of report_again",
        (None, "planner", 1): "FINAL",
    }
    assert all(request.on_text is not None for request in planning.plan_requests)
    finished = seen[-1]
    assert isinstance(finished, RunFinished)
    assert (finished.status, finished.output) == ("succeeded", "FINAL")


# -- leaving early, resuming -------------------------------------------------------------------


async def test_leaving_early_cancels_the_run_and_its_resume_streams_only_what_is_left(
    store_url: str,  # noqa: F811 - the fixture
) -> None:
    entered = anyio.Event()
    cancelled: list[str] = []

    async def respond(request: ModelRequest) -> str:
        prompt = _prompt(request)
        if "Do c" in prompt:
            entered.set()
            try:
                await anyio.sleep_forever()
            except anyio.get_cancelled_exc_class():
                cancelled.append("c")
                raise
        return f"answer to {prompt}"

    model = FunctionModel(respond, name="mini")
    orch = Orchestrator(workers=[Agent("w", model)], memory=store_url)
    async with orch, orch.stream(_graph(), run_id="early") as events:
        async for event in events:
            if isinstance(event, TaskStarted) and event.task_id == "c":
                await entered.wait()
                break
    assert cancelled == ["c"]
    with pytest.raises(ConfigError, match="run 'early' has no result: it was cancelled"):
        _ = events.result
    with Store.open(store_url) as store:
        record = store.get_run("early")
        assert record is not None
        assert record.status == "interrupted"
        assert {row.task_id: row.status for row in store.get_tasks("early")}["a"] == "succeeded"

    again = _echo()
    orch = Orchestrator(workers=[Agent("w", again)], memory=store_url)
    async with orch, orch.stream_resume("early") as events:
        seen = [event async for event in events]

    result = events.result
    assert result.status == "succeeded"
    assert [(e.kind, _task_of(e)) for e in seen if e.kind != DELTA] == [
        ("run_started", None),
        ("task_queued", "c"),
        ("task_started", "c"),
        ("task_succeeded", "c"),
        ("run_finished", None),
    ]
    assert _joined(seen) == {("c", "w", 1): result.tasks["c"].output}
    assert len(again.requests) == 1


# -- buffering ---------------------------------------------------------------------------------


async def test_a_consumer_that_does_not_read_loses_text_deltas_but_no_state_event() -> None:
    model = _echo(chunk_size=2)
    orch = Orchestrator(workers=[Agent("w", model)], memory=None)
    finished = anyio.Event()
    orch.subscribe(lambda event: finished.set() if isinstance(event, RunFinished) else None)
    async with orch.stream(_graph(), max_buffered_deltas=5) as events:
        await finished.wait()  # the whole run happens while nobody reads
        seen = [event async for event in events]

    result = events.result
    assert result.status == "succeeded"
    chunks = sum(math.ceil(len(task.output) / 2) for task in result.tasks.values())
    deltas = [event for event in seen if isinstance(event, TaskTextDelta)]
    assert (len(deltas), events.dropped_deltas) == (5, chunks - 5)
    states = [(event.kind, _task_of(event)) for event in seen if event.kind != DELTA]
    assert len(states) == 11
    assert states[0] == ("run_started", None)
    assert states[-1] == ("run_finished", None)
    assert sorted(task for kind, task in states if kind == "task_succeeded") == ["a", "b", "c"]


async def test_requests_stream_only_for_a_stream_that_wants_deltas() -> None:
    model = _echo()
    seen: list[Event] = []
    orch = Orchestrator(workers=[Agent("w", model)], on_event=seen.append, memory=None)
    await orch.execute(_graph())
    async with orch.stream(_graph(), deltas=False) as events:
        kinds = [event.kind async for event in events]

    assert len(seen) == 22  # both runs' events reached the handler
    assert DELTA not in kinds
    assert len(kinds) == 11
    assert [request.on_text for request in model.requests] == [None] * 6


async def test_a_run_started_inside_a_streamed_run_streams_nothing_into_it() -> None:
    inner_model, outer_model = _echo(), _echo()
    orch = Orchestrator(
        workers=[Agent("inner", inner_model), Agent("outer", outer_model)], memory=None
    )
    inner = TaskGraph()
    inner.add("x", agent="inner", prompt="Do x")

    async def nested(context: Any) -> str:
        result = await orch.execute(inner, run_id="inner-run")
        return str(result.tasks["x"].output)

    graph = TaskGraph()
    graph.add("n", fn=nested)
    graph.add("o", agent="outer", prompt="Do o")
    async with orch.stream(graph, run_id="outer-run") as events:
        seen = [event async for event in events]

    assert events.result.tasks["n"].output == "answer to Do x"
    assert {event.run_id for event in seen} == {"outer-run"}
    assert [request.on_text is None for request in inner_model.requests] == [True]
    assert [request.on_text is None for request in outer_model.requests] == [False]
    assert _joined(seen) == {("o", "outer", 1): "answer to Do o"}


# -- errors ------------------------------------------------------------------------------------


async def test_an_error_that_ends_the_run_comes_out_of_the_iteration() -> None:
    def broken(request: ModelRequest) -> str:
        raise ValueError("a bug in a custom model")

    orch = Orchestrator(workers=[Agent("w", FunctionModel(broken))], memory=None)
    graph = TaskGraph()
    graph.add("a", agent="w", prompt="Do a")
    kinds: list[str] = []
    events = orch.stream(graph, run_id="broken")

    async def read() -> None:
        async with events:
            async for event in events:
                kinds.append(event.kind)  # noqa: PERF401 - what came before the error is kept

    with pytest.raises(ValueError, match="a bug in a custom model"):
        await read()

    assert kinds == ["run_started", "task_queued", "task_started", "task_cancelled"]
    assert isinstance(events.error, ValueError)
    with pytest.raises(ConfigError, match="run 'broken' has no result: it ended with ValueError"):
        _ = events.result


async def test_bad_stream_arguments_are_refused_with_the_remedy() -> None:
    orch = Orchestrator(workers=[Agent("w", _echo())], memory=None)
    with pytest.raises(ConfigError, match=r"takes a TaskGraph .* or a goal str .* got int"):
        orch.stream(42)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="output_type and plan are for a goal"):
        orch.stream(_graph(), output_type=RunFinished)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="max_buffered_deltas must be a whole number"):
        orch.stream(_graph(), max_buffered_deltas=-1)
    events = orch.stream(_graph(), run_id="later")
    with pytest.raises(ConfigError, match="iterate a stream inside its block"):
        await events.__anext__()
    with pytest.raises(ConfigError, match="run 'later' has not finished"):
        _ = events.result


# -- JSON and its schema -----------------------------------------------------------------------


def test_the_committed_event_schema_is_up_to_date() -> None:
    committed = json.loads(SCHEMA.read_text())
    assert committed == events_json_schema(), (
        "run: delegate schema --events > configs/events.schema.json"
    )
    printed = CliRunner().invoke(main, ["schema", "--events"])
    assert printed.exit_code == 0
    assert json.loads(printed.output) == committed


def test_an_event_as_json_has_its_kind_and_every_field_and_validates() -> None:
    event = PlanTaskAdded(
        run_id="r", at=1.5, revision=2, task_id="t", agent="scout", deps=("a",), instructions="x"
    )
    document = event_json(event)
    assert document == {
        "kind": "plan_task_added",
        "run_id": "r",
        "at": 1.5,
        "revision": 2,
        "task_id": "t",
        "agent": "scout",
        "deps": ["a"],
        "instructions": "x",
    }
    validator = jsonschema.Draft202012Validator(events_json_schema())
    validator.validate(document)
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({**document, "kind": "task_queued"})


# -- delegate run --events ---------------------------------------------------------------------

SECRET = "sk-proj-Zq8vK2mN4pL7xR9tW3yB6cD1fG5hJ0aS"

ECHO_WORKFLOW = """\
name: echo
inputs:
  topic: {type: string}
agents:
  scout:
    model: openai/gpt-4o-mini
steps:
  - id: first
    agent: scout
    prompt: "{{ inputs.topic }} is the topic."
  - id: second
    agent: scout
    needs: [first]
    prompt: "{{ inputs.topic }} again."
output: second
"""


def test_run_events_writes_one_valid_json_object_per_event_and_masks_keys(
    tmp_path: Path,
) -> None:
    workflow = tmp_path / "echo.yaml"
    workflow.write_text(ECHO_WORKFLOW)
    command = [sys.executable, "-m", "delegate", "run", str(workflow), "-i", f"topic={SECRET}"]
    command += ["--simulate", "--time-scale", "0", "--db", f"sqlite:///{tmp_path / 'r.db'}"]
    command += ["--events", "--run-id", "ev"]
    env = {**os.environ, "OPENAI_API_KEY": SECRET}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)

    assert done.returncode == 0, done.stderr
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    for line in lines:
        validator.validate(line)
    assert {line["run_id"] for line in lines} == {"ev"}
    kinds = [(line["kind"], line.get("task_id")) for line in lines if line["kind"] != DELTA]
    assert kinds == [
        ("run_started", None),
        ("task_queued", "first"),
        ("task_started", "first"),
        ("task_succeeded", "first"),
        ("task_queued", "second"),
        ("task_started", "second"),
        ("task_succeeded", "second"),
        ("run_finished", None),
    ]
    texts: dict[str, str] = defaultdict(str)
    for line in lines:
        if line["kind"] == DELTA:
            texts[line["task_id"]] += line["text"]
    outputs = {
        line["task_id"]: line["output"] for line in lines if line["kind"] == "task_succeeded"
    }
    assert texts == outputs
    assert outputs["first"].startswith('On "*** is the topic."')  # the simulation quotes it
    # Not the key, nor any piece of it (a delta may end inside it).
    assert all(SECRET[i : i + 6] not in done.stdout for i in range(8, len(SECRET) - 5))
    assert lines[-1]["output"] == outputs["second"]
    # The summary stays on stderr; stdout holds events only.
    assert "run ev succeeded" in done.stderr


def test_run_events_and_json_together_are_refused() -> None:
    workflow = str(ROOT / "configs" / "market-brief.yaml")
    done = CliRunner().invoke(main, ["run", workflow, "--simulate", "--events", "--json"])
    assert done.exit_code == 2
    assert "--events and --json both write to stdout" in done.output
    assert "Traceback" not in done.output


def _delta(text: str, task: str | None = "t", attempt: int = 1) -> TaskTextDelta:
    return TaskTextDelta(run_id="r", task_id=task, agent="w", attempt=attempt, text=text)


def test_the_delta_masker_holds_back_what_may_begin_a_key_and_masks_it_whole() -> None:
    masker = DeltaMasker(frozenset({"sk-abcdefgh12345678"}))

    def texts(deltas: list[TaskTextDelta]) -> list[str]:
        return [delta.text for delta in deltas]

    assert texts(masker.feed(_delta("the key sk-ab"))) == ["the key "]
    assert texts(masker.feed(_delta("cdefgh1234"))) == []
    assert texts(masker.feed(_delta("5678 works."))) == ["*** works."]
    assert texts(masker.feed(_delta("it is"))) == ["it i"]  # an "s" may begin the key
    assert texts(masker.feed(_delta(" done"))) == ["s done"]
    # A start that turns out not to be a key is let go as it is.
    assert texts(masker.feed(_delta("so sk-abX", attempt=2))) == ["so sk-abX"]
    assert texts(masker.feed(_delta("ends sk-abc", task=None))) == ["ends "]
    assert texts(masker.flush(None)) == ["sk-abc"]
    assert masker.flush(every=True) == []
