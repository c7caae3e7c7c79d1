"""Votes, judge picks and verdicts are published as `TaskChecked` events, in order, with the
attempt they belong to; a task without votes or a judge publishes none."""

from __future__ import annotations

import io
import time
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

from delegate import Agent, Orchestrator, TaskChecked, TaskGraph
from delegate.cli._live import RunDisplay
from delegate.errors import RateLimitError
from delegate.orchestrator.checks import run_checked
from delegate.orchestrator.events import Event
from delegate.orchestrator.scheduler import RetryPolicy
from delegate.testing import ScriptedModel

pytestmark = pytest.mark.anyio

FAST = RetryPolicy(max_retries=2, base_delay=0.001, max_delay=0.01)
ASK = "What is the capital of France?"
SECRET = "sk-proj-" + "Zq9" * 12  # a credential-looking value a judge echoed
PASS: dict[str, Any] = {"passed": True, "feedback": ""}


class Person(BaseModel):
    name: str
    year: int


def _decision(event: TaskChecked) -> dict[str, Any]:
    return {
        "task": event.task_id,
        "attempt": event.attempt,
        "check": event.check,
        "samples": event.samples,
        "agent": event.agent,
        "unanimous": event.unanimous,
        "passed": event.passed,
        "feedback": event.feedback,
        "chosen": event.chosen,
        "judge": event.judge,
    }


async def _checked_events(graph: TaskGraph) -> tuple[list[Event], list[dict[str, Any]]]:
    events: list[Event] = []
    orchestrator = Orchestrator(retry=FAST, memory=None)
    orchestrator.subscribe(events.append)
    with anyio.fail_after(10):  # a guard against hangs, not a timing assertion
        result = await orchestrator.execute(graph)
    assert result.status == "succeeded", result.error
    checked = [_decision(e) for e in events if isinstance(e, TaskChecked)]
    return events, checked


async def test_disagreeing_structured_votes_then_a_rejection_then_a_pass() -> None:
    worker_model = ScriptedModel(
        [
            {"name": "Ada", "year": 1815},
            {"name": "Ada", "year": 1816},
            {"name": "Ida", "year": 1815},
            {"name": "Ada Lovelace", "year": 1815},  # the re-ask
        ]
    )
    judge_model = ScriptedModel(
        [{"passed": False, "feedback": f"Give the full name. <b>{SECRET}</b>"}, PASS]
    )
    worker = Agent("w", worker_model, output_type=Person)
    g = TaskGraph()
    g.add("who", agent=worker, prompt="Who?", votes=3, verify=Agent("j", judge_model))

    _, checked = await _checked_events(g)

    common = {"task": "who", "attempt": 1, "agent": "w", "unanimous": None, "chosen": None}
    assert checked == [
        # The merge (Ada, 1815) is credited to the first sample, which agrees on both fields.
        {**common, "check": "vote", "samples": 3, "unanimous": False, "passed": None,
         "feedback": "", "chosen": 1, "judge": None},
        {**common, "check": "judge", "samples": 1, "passed": False,
         "feedback": "Give the full name. <b>sk-***</b>", "judge": "j"},
        {**common, "check": "judge", "samples": 1, "passed": True, "feedback": "", "judge": "j"},
    ]  # fmt: skip


async def test_disagreeing_text_votes_are_settled_by_a_pick_without_a_verdict() -> None:
    worker_model = ScriptedModel(["Paris", "Lyon", "paris "])
    judge_model = ScriptedModel([{"index": 2, "reason": "the second is right"}])
    worker = Agent("w", worker_model, votes=3, verify=Agent("j", judge_model))
    g = TaskGraph()
    g.add("capital", agent=worker, prompt=ASK)

    events, checked = await _checked_events(g)

    common = {"task": "capital", "attempt": 1, "samples": 3, "agent": "w", "passed": None}
    assert checked == [
        {**common, "check": "vote", "unanimous": False, "feedback": "", "chosen": 1,
         "judge": None},
        {**common, "check": "pick", "unanimous": None, "feedback": "the second is right",
         "chosen": 2, "judge": "j"},
    ]  # fmt: skip
    kinds = [e.kind for e in events if getattr(e, "task_id", None) == "capital"]
    assert kinds == [
        "task_queued",
        "task_started",
        "task_checked",
        "task_checked",
        "task_succeeded",
    ]


async def test_unanimous_votes_are_one_event_and_a_plain_task_none() -> None:
    worker = Agent("w", ScriptedModel(["Paris", "paris", "PARIS", "Rome"]))
    g = TaskGraph()
    g.add("agreed", agent=worker, prompt=ASK, votes=3)
    g.add("plain", agent=worker, prompt="Say Rome.", deps=["agreed"])

    events, checked = await _checked_events(g)

    assert checked == [
        {"task": "agreed", "attempt": 1, "check": "vote", "samples": 3, "agent": "w",
         "unanimous": True, "passed": None, "feedback": "", "chosen": 1, "judge": None},
    ]  # fmt: skip
    assert [e.kind for e in events if getattr(e, "task_id", None) == "plain"] == [
        "task_queued",
        "task_started",
        "task_succeeded",
    ]


async def test_verdicts_carry_the_attempt_and_long_feedback_is_cut() -> None:
    worker_model = ScriptedModel([RateLimitError("slow down", retry_after=0.001), "draft", "fixed"])
    judge_model = ScriptedModel([{"passed": False, "feedback": "x" * 1_500}, PASS])
    worker = Agent("w", worker_model, verify=Agent("j", judge_model))
    g = TaskGraph()
    g.add("write", agent=worker, prompt="Write.")

    events, checked = await _checked_events(g)

    assert [e.kind for e in events if getattr(e, "task_id", None) == "write"][1:] == [
        "task_started",
        "task_retried",
        "task_started",
        "task_checked",
        "task_checked",
        "task_succeeded",
    ]
    common = {"task": "write", "attempt": 2, "check": "judge", "samples": 1, "agent": "w",
              "unanimous": None, "chosen": None, "judge": "j"}  # fmt: skip
    assert checked == [
        {**common, "passed": False, "feedback": "x" * 1_000 + "…"},
        {**common, "passed": True, "feedback": ""},
    ]


async def test_a_pick_out_of_range_is_told_with_no_choice() -> None:
    told: list[dict[str, Any]] = []
    judge = Agent("j", ScriptedModel([{"index": 7, "reason": "?"}]))
    worker = Agent("w", ScriptedModel(["Lyon", "Paris", "Paris"]))

    def listen(**decision: Any) -> None:
        told.append(decision)

    result = await run_checked(worker, ASK, verify=judge, votes=3, on_check=listen)

    assert result.output == "Paris"
    assert [(d["check"], d["chosen"], d["feedback"]) for d in told] == [
        ("vote", 2, ""),
        ("pick", None, "?"),
    ]


def test_the_plain_progress_shows_a_rejection_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    stream = io.StringIO()
    display = RunDisplay(stream, live=False)
    at = 1_700_000_000.0  # 22:13:20 UTC
    common: dict[str, Any] = {"run_id": "r1", "task_id": "who", "attempt": 1, "at": at}
    for event in (
        TaskChecked(**common, check="vote", samples=3, agent="w", unanimous=False, chosen=1),
        TaskChecked(**common, check="pick", samples=3, agent="w", chosen=2, judge="j"),
        TaskChecked(**common, check="judge", samples=1, agent="w", passed=True, judge="j"),
        TaskChecked(
            **common, check="judge", samples=1, agent="w", passed=False, judge="j",
            feedback=f"Give the\nfull name {SECRET}",
        ),
    ):  # fmt: skip
        display(event)
    monkeypatch.undo()
    time.tzset()

    assert stream.getvalue().splitlines() == [
        "22:13:20 task who: judge j rejected w's answer: Give the full name sk-***",
    ]
