"""After a judge rejects an answer: reasoning effort first, on the same model, then the tier.

A reasoning worker (its own or its task's `reasoning_effort` set) is asked again one effort higher
after each rejection, up to "high"; only then does its fallback (a stronger tier) answer. A
worker that is not a reasoning model is re-asked once, then escalated, as before. Every step is a
"judge" `TaskChecked` with the effort the answer was asked at and what the step cost.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest

from delegate import Agent, Orchestrator, TaskChecked, TaskGraph
from delegate.agents.models import ModelRequest, ModelResponse, ReasoningEffort, Usage
from delegate.errors import VerificationFailed
from delegate.orchestrator.checks import RETRY_PROMPT, run_checked
from delegate.orchestrator.events import Event
from delegate.orchestrator.planner import PlanTask
from delegate.orchestrator.run import RunResult
from delegate.orchestrator.scheduler import RetryPolicy
from delegate.testing import FunctionModel

pytestmark = pytest.mark.anyio

FAST = RetryPolicy(max_retries=2, base_delay=0.001, max_delay=0.01)
ASK = "When was Ada Lovelace born?"
WORKER_USD, JUDGE_USD, STRONG_USD = 0.01, 0.001, 0.1  # what each call of theirs costs


class Priced:
    """A fake model whose every call costs a fixed amount (10 output tokens), answering in turn
    from `answers` (the last one forever), noting each request's reasoning effort."""

    def __init__(self, name: str, usd: float, *answers: Any) -> None:
        self.answers = list(answers)
        self.efforts: list[ReasoningEffort | None] = []
        self.usd = usd
        self.model = FunctionModel(self._answer, output_price=usd * 100_000, name=name)

    def _answer(self, request: ModelRequest) -> ModelResponse:
        self.efforts.append(request.reasoning_effort)
        answer = self.answers[min(len(self.efforts), len(self.answers)) - 1]
        text = answer if isinstance(answer, str) else json.dumps(answer)
        return ModelResponse(text=text, usage=Usage(output_tokens=10, cost_usd=self.usd, calls=1))

    @property
    def calls(self) -> int:
        return len(self.efforts)


def reject(feedback: str) -> dict[str, Any]:
    return {"passed": False, "feedback": feedback}


PASS: dict[str, Any] = {"passed": True, "feedback": ""}


async def _run(graph: TaskGraph) -> tuple[RunResult, list[TaskChecked]]:
    events: list[Event] = []
    orchestrator = Orchestrator(retry=FAST, memory=None)
    orchestrator.subscribe(events.append)
    with anyio.fail_after(10):  # a guard against hangs, not a timing assertion
        result = await orchestrator.execute(graph)
    return result, [event for event in events if isinstance(event, TaskChecked)]


def _team(
    effort: ReasoningEffort | None, verdicts: list[dict[str, Any]]
) -> tuple[Agent[str], Priced, Priced, Priced]:
    worker = Priced("mini", WORKER_USD, "1814", "1816", "1817", "1818")
    strong = Priced("big", STRONG_USD, "1815")
    judge = Priced("nano", JUDGE_USD, *verdicts)
    agent = Agent(
        "w",
        worker.model,
        reasoning_effort=effort,
        fallback=Agent("strong", strong.model),
        verify=Agent("j", judge.model),
    )
    return agent, worker, strong, judge


async def test_effort_rises_step_by_step_before_the_fallback() -> None:
    agent, worker, strong, judge = _team("low", [reject("no")] * 3 + [PASS])
    g = TaskGraph()
    g.add("born", agent=agent, prompt=ASK)

    result, checked = await _run(g)

    assert result.output == "1815"
    assert worker.efforts == ["low", "medium", "high"]  # the same model, thinking harder
    assert (strong.calls, judge.calls) == (1, 4)  # then the stronger tier
    assert [(c.agent, c.effort, c.passed) for c in checked] == [
        ("w", "low", False),
        ("w", "medium", False),
        ("w", "high", False),
        ("strong", None, True),
    ]
    step = WORKER_USD + JUDGE_USD
    assert [c.cost_usd for c in checked] == pytest.approx(
        [step, step, step, STRONG_USD + JUDGE_USD]
    )
    task = result.tasks["born"]
    assert task.usage.cost_usd == pytest.approx(3 * step + STRONG_USD + JUDGE_USD)
    assert (task.agent, task.model) == ("strong", "big")


async def test_a_pass_at_a_higher_effort_ends_the_escalation() -> None:
    agent, worker, strong, judge = _team("low", [reject("too early"), PASS])
    g = TaskGraph()
    g.add("born", agent=agent, prompt=ASK)

    result, checked = await _run(g)

    assert result.output == "1816"
    assert worker.efforts == ["low", "medium"]
    assert (strong.calls, judge.calls) == (0, 2)
    assert [(c.effort, c.passed) for c in checked] == [("low", False), ("medium", True)]
    retried = worker.model.requests[1].messages[-1]["content"]
    assert retried == RETRY_PROMPT.format(task=ASK, answer="1814", feedback="too early")


async def test_a_worker_that_does_not_reason_is_re_asked_once_then_escalated() -> None:
    agent, worker, strong, judge = _team(None, [reject("no"), reject("still no"), PASS])
    g = TaskGraph()
    g.add("born", agent=agent, prompt=ASK)

    result, checked = await _run(g)

    assert result.output == "1815"
    assert worker.efforts == [None, None]
    assert (strong.calls, judge.calls) == (1, 3)
    assert [(c.agent, c.effort) for c in checked] == [("w", None), ("w", None), ("strong", None)]


async def test_the_tasks_effort_is_where_escalation_starts() -> None:
    agent, worker, strong, _ = _team("low", [reject("no"), reject("no"), PASS])
    g = TaskGraph()
    g.add("born", agent=agent, prompt=ASK, reasoning_effort="medium")

    result, checked = await _run(g)

    assert result.output == "1815"
    assert worker.efforts == ["medium", "high"]
    assert strong.efforts == ["medium"]  # the task's effort holds for the fallback too
    assert [c.effort for c in checked] == ["medium", "high", "medium"]


async def test_at_high_effort_one_re_ask_then_the_fallback() -> None:
    agent, worker, strong, _ = _team("high", [reject("no"), reject("no"), PASS])

    result = await run_checked(agent, ASK, verify=agent.verify)

    assert result.output == "1815"
    assert worker.efforts == ["high", "high"]
    assert strong.calls == 1


async def test_the_planners_effort_hint_sets_the_starting_point() -> None:
    agent, worker, strong, _ = _team("low", [reject("no"), reject("no"), PASS])
    spec = PlanTask(id="born", agent="w", instructions=ASK, effort="high").spec(agent)
    assert spec.reasoning_effort == "high"
    g = TaskGraph()
    g.add_spec(spec, agent=agent)

    result, checked = await _run(g)

    assert result.output == "1815"
    assert worker.efforts == ["high", "high"]  # no lower rung to climb from the hint
    assert strong.efforts == ["high"]
    assert [c.effort for c in checked] == ["high", "high", "high"]


async def test_rejected_at_every_rung_the_failure_says_what_was_tried() -> None:
    agent, worker, strong, judge = _team("minimal", [reject("wrong year")] * 4 + [reject("no")])

    with pytest.raises(VerificationFailed) as caught:
        await run_checked(agent, ASK, verify=agent.verify)

    assert worker.efforts == ["minimal", "low", "medium", "high"]
    assert (strong.calls, judge.calls) == (1, 5)
    error = caught.value
    assert error.attempts == 5
    assert (error.agent, error.judge, error.feedback) == ("w", "j", "no")
    assert str(error).startswith(
        "judge 'j' rejected 5 answers to the task (its first answer at reasoning effort minimal, "
        "then re-asks with the feedback at low, medium, high, then its fallback 'strong'); its "
        'last feedback: "no".'
    )


async def test_without_a_fallback_the_failure_suggests_one() -> None:
    worker = Priced("mini", WORKER_USD, "1814")
    judge = Priced("nano", JUDGE_USD, reject("no"))
    agent = Agent("w", worker.model, reasoning_effort="medium", verify=Agent("j", judge.model))

    with pytest.raises(VerificationFailed) as caught:
        await run_checked(agent, ASK, verify=agent.verify)

    assert worker.efforts == ["medium", "high"]
    assert caught.value.attempts == 2
    message = str(caught.value)
    assert "at reasoning effort medium, then a re-ask with the feedback at high)" in message
    assert "give agent 'w' a fallback=Agent(...) with a stronger model" in message
