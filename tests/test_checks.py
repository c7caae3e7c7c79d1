"""Verification (`verify=`) and voting (`votes=`): exact call counts, prompts, budgets, resume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import BaseModel, model_validator

from delegate.agents.agent import Agent
from delegate.agents.limits import Budget
from delegate.agents.models import ModelRequest, ModelResponse, Price
from delegate.errors import (
    BadRequestError,
    GraphError,
    PermanentModelError,
    PriceUnknownError,
    VerificationFailed,
)
from delegate.orchestrator.checks import (
    JUDGE_PROMPT,
    PICK_PROMPT,
    RETRY_PROMPT,
    Choice,
    Verdict,
    run_checked,
)
from delegate.orchestrator.graph import GraphSpec, TaskGraph
from delegate.orchestrator.run import Orchestrator, RunResult
from delegate.orchestrator.scheduler import RetryPolicy
from delegate.testing import FunctionModel, ScriptedModel

pytestmark = pytest.mark.anyio

FAST = RetryPolicy(max_retries=2, base_delay=0.001, max_delay=0.01)
ASK = "What is the capital of France?"
PASS: dict[str, Any] = {"passed": True, "feedback": ""}


def fail(feedback: str) -> dict[str, Any]:
    return {"passed": False, "feedback": feedback}


def _last(model: ScriptedModel | FunctionModel, call: int) -> str:
    return model.requests[call].messages[-1]["content"]


async def _run(graph: TaskGraph, **options: Any) -> RunResult:
    options.setdefault("retry", FAST)
    options.setdefault("memory", None)
    with anyio.fail_after(10):  # a guard against hangs, not a timing assertion
        return await Orchestrator(**options).execute(graph)


class Person(BaseModel):
    name: str
    year: int


class Span(BaseModel):
    lo: int
    hi: int

    @model_validator(mode="after")
    def ordered(self) -> Span:
        if self.lo > self.hi:
            raise ValueError("lo must not exceed hi")
        return self


# --- verify ------------------------------------------------------------------------------------


async def test_a_passing_answer_costs_one_worker_and_one_judge_call() -> None:
    worker_model = ScriptedModel(["Paris"], name="mini")
    judge_model = ScriptedModel([PASS], name="nano")
    g = TaskGraph()
    g.add("capital", agent=Agent("w", worker_model, verify=Agent("judge", judge_model)), prompt=ASK)

    result = await _run(g)

    assert result.status == "succeeded"
    assert result.output == "Paris"
    assert (worker_model.calls, judge_model.calls) == (1, 1)
    judged = judge_model.requests[0]
    assert judged.output_schema == Verdict.model_json_schema()
    assert judged.messages[-1]["content"] == JUDGE_PROMPT.format(task=ASK, answer="Paris")
    task = result.tasks["capital"]
    assert (task.agent, task.model, task.usage.calls) == ("w", "mini", 2)
    assert result.usage.by_agent["judge"].calls == 1  # the judge's call, under its own name
    assert result.usage.by_agent["w"].calls == 1


async def test_a_rejected_answer_is_asked_again_with_the_feedback() -> None:
    worker_model = ScriptedModel(["Lyon", "Paris"])
    judge_model = ScriptedModel([fail("Lyon is not the capital"), PASS])
    g = TaskGraph()
    g.add("capital", agent=Agent("w", worker_model, verify=Agent("judge", judge_model)), prompt=ASK)

    result = await _run(g)

    assert result.output == "Paris"
    assert (worker_model.calls, judge_model.calls) == (2, 2)
    again = _last(worker_model, 1)
    assert again == RETRY_PROMPT.format(task=ASK, answer="Lyon", feedback="Lyon is not the capital")
    assert "Lyon is not the capital" in again
    assert _last(judge_model, 1) == JUDGE_PROMPT.format(task=ASK, answer="Paris")
    assert result.tasks["capital"].usage.calls == 4
    assert result.tasks["capital"].attempts == 1


async def test_a_second_rejection_escalates_to_the_fallback() -> None:
    worker_model = ScriptedModel(["Lyon", "Marseille"], name="mini")
    strong_model = ScriptedModel(["Paris"], name="big")
    judge_model = ScriptedModel([fail("not Lyon"), fail("not Marseille either"), PASS])
    worker = Agent(
        "w", worker_model, fallback=Agent("strong", strong_model), verify=Agent("j", judge_model)
    )
    g = TaskGraph()
    g.add("capital", agent=worker, prompt=ASK)

    result = await _run(g)

    assert result.output == "Paris"
    assert (worker_model.calls, strong_model.calls, judge_model.calls) == (2, 1, 3)
    assert _last(strong_model, 0) == RETRY_PROMPT.format(
        task=ASK, answer="Marseille", feedback="not Marseille either"
    )
    task = result.tasks["capital"]
    assert (task.agent, task.model, task.usage.calls) == ("strong", "big", 6)


async def test_rejected_everywhere_fails_the_task_and_skips_its_dependents() -> None:
    worker_model = ScriptedModel(["1815", "1816"])
    strong_model = ScriptedModel(["1817"])
    judge_model = ScriptedModel([fail("wrong year"), fail("still wrong"), fail("give a full date")])
    worker = Agent(
        "w", worker_model, fallback=Agent("strong", strong_model), verify=Agent("j", judge_model)
    )
    after = FunctionModel(lambda request: "never")
    g = TaskGraph()
    born = g.add("born", agent=worker, prompt="When was Ada Lovelace born?")
    g.add("essay", agent=Agent("writer", after), prompt="Write about it.", deps=[born])

    result = await _run(g)

    born_result = result.tasks["born"]
    assert born_result.status == "failed"
    assert born_result.attempts == 1  # permanent: not retried
    assert born_result.error is not None
    assert '"give a full date"' in born_result.error  # the judge's last feedback, quoted
    assert "judge 'j' rejected 3 answers" in born_result.error
    assert "then its fallback 'strong'" in born_result.error
    assert "stronger fallback" in born_result.error  # the remedy
    assert result.tasks["essay"].status == "skipped"
    assert after.calls == 0
    assert (worker_model.calls, strong_model.calls, judge_model.calls) == (2, 1, 3)


async def test_verification_failed_carries_the_judge_and_feedback() -> None:
    worker = Agent("w", ScriptedModel(["a", "b"]))
    judge_model = ScriptedModel([fail("too vague"), fail("still too vague")])
    judge = Agent("j", judge_model)

    with pytest.raises(VerificationFailed) as caught:
        await run_checked(worker, "Explain.", verify=judge)

    error = caught.value
    assert isinstance(error, PermanentModelError)
    assert error.retryable is False
    assert (error.agent, error.judge, error.feedback, error.attempts) == (
        "w",
        "j",
        "still too vague",
        2,
    )
    assert '"still too vague"' in str(error)
    assert "give agent 'w' a fallback=Agent(...)" in str(error)  # no fallback: say how to add one
    assert judge_model.calls == 2


# --- votes ------------------------------------------------------------------------------------


async def test_unanimous_votes_never_call_the_judge() -> None:
    worker_model = ScriptedModel(["Paris", " paris\n", "PARIS"])
    judge_model = ScriptedModel([])
    worker = Agent("w", worker_model, temperature=0.7, votes=3, verify=Agent("j", judge_model))
    g = TaskGraph()
    g.add("capital", agent=worker, prompt=ASK)

    result = await _run(g)

    assert result.output == "Paris"
    assert (worker_model.calls, judge_model.calls) == (3, 0)
    assert result.tasks["capital"].usage.calls == 3


async def test_two_against_one_text_takes_the_majority() -> None:
    worker_model = ScriptedModel(["Lyon", "Paris", "  paris "])
    g = TaskGraph()
    g.add("capital", agent=Agent("w", worker_model), prompt=ASK, votes=3)

    result = await _run(g)

    assert result.output == "Paris"  # the first answer of the majority, as it was given
    assert worker_model.calls == 3
    assert [r.messages[-1]["content"] for r in worker_model.requests] == [ASK] * 3


async def test_a_tie_goes_to_the_earliest_sample() -> None:
    result = await run_checked(Agent("w", ScriptedModel(["B", "A"])), ASK, votes=2)
    assert (result.output, result.calls) == ("B", 2)


async def test_structured_votes_merge_field_by_field() -> None:
    worker_model = ScriptedModel(
        [
            {"name": "Ada", "year": 1815},
            {"name": "Ada", "year": 1816},
            {"name": "Ida", "year": 1816},
        ]
    )
    agent = Agent("w", worker_model, output_type=Person)

    result = await run_checked(agent, "Who?", votes=3)

    # No sample gave this object: each field took its own majority.
    assert result.output == Person(name="Ada", year=1816)
    assert json.loads(result.text) == {"name": "Ada", "year": 1816}
    assert result.calls == 3


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        # Field majorities give lo=5, hi=2, which does not validate: the most common answer wins.
        ([(1, 2), (1, 2), (5, 9), (5, 8), (5, 7)], Span(lo=1, hi=2)),
        # ... and when every answer differs, the first one.
        ([(1, 2), (5, 9), (5, 8)], Span(lo=1, hi=2)),
        ([(3, 4), (5, 9), (5, 8)], Span(lo=3, hi=4)),
    ],
)
async def test_a_merge_that_does_not_validate_falls_back_to_whole_answers(
    answers: list[tuple[int, int]], expected: Span
) -> None:
    model = ScriptedModel([{"lo": lo, "hi": hi} for lo, hi in answers])
    result = await run_checked(Agent("w", model, output_type=Span), "Span?", votes=len(answers))
    assert result.output == expected


async def test_disagreeing_text_samples_are_settled_by_the_judges_pick() -> None:
    worker_model = ScriptedModel(["Paris", "Lyon", "Marseille"])
    judge_model = ScriptedModel([{"index": 2, "reason": "the second is right"}])
    worker = Agent("w", worker_model, votes=3, verify=Agent("j", judge_model))
    g = TaskGraph()
    g.add("capital", agent=worker, prompt=ASK)

    result = await _run(g)

    assert result.output == "Lyon"
    assert (worker_model.calls, judge_model.calls) == (3, 1)  # a pick, then no verdict
    picked = judge_model.requests[0]
    assert picked.output_schema == Choice.model_json_schema()
    assert picked.messages[-1]["content"] == PICK_PROMPT.format(
        count=3,
        task=ASK,
        answers="## Answer 1\nParis\n\n## Answer 2\nLyon\n\n## Answer 3\nMarseille",
    )


async def test_the_judge_overrules_a_majority_when_samples_disagree() -> None:
    judge_model = ScriptedModel([{"index": 3, "reason": "the odd one out is right"}])
    worker = Agent("w", ScriptedModel(["Lyon", "lyon", "Paris"]))

    result = await run_checked(worker, ASK, verify=Agent("j", judge_model), votes=3)

    assert result.output == "Paris"
    assert result.calls == 4


async def test_a_pick_out_of_range_keeps_the_majority() -> None:
    judge = Agent("j", ScriptedModel([{"index": 7, "reason": "?"}]))
    worker = Agent("w", ScriptedModel(["Lyon", "Paris", "Paris"]))

    result = await run_checked(worker, ASK, verify=judge, votes=3)

    assert result.output == "Paris"


async def test_disagreeing_structured_samples_have_the_merge_judged() -> None:
    worker_model = ScriptedModel(
        [
            {"name": "Ada", "year": 1815},
            {"name": "Ada", "year": 1816},
            {"name": "Ida", "year": 1815},
        ]
    )
    judge_model = ScriptedModel([PASS])
    worker = Agent("w", worker_model, output_type=Person)

    result = await run_checked(worker, "Who?", verify=Agent("j", judge_model), votes=3)

    assert result.output == Person(name="Ada", year=1815)
    assert judge_model.calls == 1
    assert judge_model.requests[0].output_schema == Verdict.model_json_schema()
    assert _last(judge_model, 0) == JUDGE_PROMPT.format(
        task="Who?", answer=Person(name="Ada", year=1815).model_dump_json()
    )
    assert result.calls == 4


async def test_a_failing_sample_fails_the_task_with_its_own_error() -> None:
    model = ScriptedModel(["Paris", BadRequestError("malformed", model="scripted"), "Paris"])

    with pytest.raises(BadRequestError):  # itself, not wrapped in an ExceptionGroup
        await run_checked(Agent("w", model), ASK, votes=3)

    assert model.calls == 2  # the third sample was not sent


# --- settings ----------------------------------------------------------------------------------


async def test_task_settings_override_the_agents() -> None:
    worker_model = FunctionModel(lambda request: "ok", name="mini")
    own_model = FunctionModel(lambda request: PASS, name="own-judge")
    other_model = FunctionModel(lambda request: PASS, name="other-judge")
    other = Agent("other", other_model)
    worker = Agent("w", worker_model, verify=Agent("own", own_model), votes=3)
    g = TaskGraph()
    g.add("defaults", agent=worker, prompt="1")  # 3 unanimous votes: no judge
    g.add("one_vote", agent=worker, prompt="2", votes=1)  # judged by the agent's judge
    g.add("judged_by_name", agent="w", prompt="3", votes=1, verify="other")

    result = await _run(g, workers=[worker, other])

    assert result.status == "succeeded"
    assert worker_model.calls == 5
    assert [_last(own_model, n) for n in range(own_model.calls)] == [
        JUDGE_PROMPT.format(task="2", answer="ok")
    ]
    assert [_last(other_model, n) for n in range(other_model.calls)] == [
        JUDGE_PROMPT.format(task="3", answer="ok")
    ]
    assert result.usage.by_agent["own"].calls == 1
    assert result.usage.by_agent["other"].calls == 1


async def test_per_task_output_cap_and_effort_reach_the_request() -> None:
    model = FunctionModel(lambda request: "ok")
    worker = Agent("w", model, max_output_tokens=999, reasoning_effort="high")
    g = TaskGraph()
    g.add("capped", agent=worker, prompt="capped", max_output_tokens=123, reasoning_effort="low")
    g.add("voted", agent=worker, prompt="voted", max_output_tokens=77, votes=2)
    g.add("own", agent=worker, prompt="own")

    await _run(g)

    sent = {
        (r.messages[-1]["content"], r.max_output_tokens, r.reasoning_effort) for r in model.requests
    }
    assert sent == {("capped", 123, "low"), ("voted", 77, "high"), ("own", 999, "high")}
    assert model.calls == 4


# --- budgets, prices, names --------------------------------------------------------------------


async def test_a_run_budget_that_fits_one_call_refuses_further_samples() -> None:
    model = FunctionModel(lambda request: "ok")
    g = TaskGraph()
    t = g.add("t", agent=Agent("w", model), prompt=ASK, votes=3)
    g.add("after", fn=lambda ctx: "never", deps=[t])

    with anyio.fail_after(10):
        result = await Orchestrator(memory=None, retry=FAST).execute(g, budget=Budget(calls=1))

    assert model.calls == 1  # nothing sent beyond the budget
    task = result.tasks["t"]
    assert task.status == "failed"
    assert task.error is not None
    assert "budget" in task.error
    assert task.attempts == 1  # a budget refusal is not retried
    assert result.usage.calls == 1
    assert result.usage.refused == 1
    assert result.tasks["after"].status == "skipped"


async def test_a_judges_own_budget_holds() -> None:
    judge_model = FunctionModel(lambda request: PASS)
    worker = Agent("w", FunctionModel(lambda request: "ok"))
    judge = Agent("judge", judge_model, budget=Budget(calls=1))
    g = TaskGraph()
    g.add("first", agent=worker, prompt="1", verify=judge)
    g.add("second", agent=worker, prompt="2", verify=judge)

    result = await _run(g, max_concurrency=1)

    statuses = sorted(t.status for t in result.tasks.values())
    assert statuses == ["failed", "succeeded"]
    failed = next(t for t in result.tasks.values() if t.status == "failed")
    assert failed.error is not None
    assert "agent 'judge'" in failed.error
    assert judge_model.calls == 1


class _Unpriced:
    name = "acme/unpriced"
    price: Price | None = None

    async def request(self, request: ModelRequest) -> ModelResponse:
        raise AssertionError("an unpriced model must not be called under a usd budget")


async def test_an_unpriced_judge_is_refused_before_any_call() -> None:
    worker_model = FunctionModel(lambda request: "ok")
    g = TaskGraph()
    g.add("t", agent=Agent("w", worker_model), prompt=ASK, verify=Agent("j", _Unpriced()))

    with pytest.raises(PriceUnknownError) as caught:
        await Orchestrator(memory=None).execute(g, budget=Budget(usd=1.0))

    assert "agent 'j'" in str(caught.value)
    assert worker_model.calls == 0


async def test_an_unknown_judge_name_is_refused_with_a_suggestion() -> None:
    judge = Agent("judge", FunctionModel(lambda request: PASS))
    worker = Agent("w", FunctionModel(lambda request: "ok"))
    g = TaskGraph()
    g.add("t", agent=worker, prompt=ASK, verify="jugde")

    with pytest.raises(GraphError) as caught:
        await Orchestrator(workers=[worker, judge], memory=None).execute(g)

    assert "task 't' uses verify 'jugde'" in str(caught.value)
    assert "did you mean 'judge'?" in str(caught.value)


async def test_a_structured_worker_cannot_judge_by_name() -> None:
    person = Agent("person", FunctionModel(lambda request: "{}"), output_type=Person)
    worker = Agent("w", FunctionModel(lambda request: "ok"))
    g = TaskGraph()
    g.add("t", agent=worker, prompt=ASK, verify="person")

    with pytest.raises(GraphError, match="task 't': the judge 'person' has output_type Person"):
        await Orchestrator(workers=[worker, person], memory=None).execute(g)


def test_the_plain_path_is_the_agents_own_run() -> None:
    agent = Agent("w", ScriptedModel(["ok"]))
    coroutine = run_checked(agent, ASK)
    try:
        assert coroutine.cr_code is Agent.run.__code__  # type: ignore[attr-defined]
    finally:
        coroutine.close()


# --- resume ------------------------------------------------------------------------------------


def test_graph_spec_keeps_the_new_task_fields() -> None:
    judge = Agent("judge", FunctionModel(lambda request: PASS))
    g = TaskGraph()
    g.add(
        "t",
        agent="w",
        prompt=ASK,
        verify=judge,
        votes=3,
        max_output_tokens=500,
        reasoning_effort="minimal",
    )
    g.add("plain", agent="w", prompt=ASK)

    spec = json.loads(json.dumps(g.spec().to_json()))
    rebuilt = TaskGraph.from_spec(GraphSpec.from_json(spec))

    task = rebuilt["t"]
    assert (task.verify, task.votes, task.max_output_tokens, task.reasoning_effort) == (
        "judge",
        3,
        500,
        "minimal",
    )
    plain = rebuilt["plain"]
    assert (plain.verify, plain.votes, plain.max_output_tokens, plain.reasoning_effort) == (
        None,
        None,
        None,
        None,
    )


def test_a_spec_stored_before_the_new_fields_still_loads() -> None:
    spec = {"version": 1, "tasks": [{"id": "t", "agent": "w", "prompt": "x", "deps": []}]}
    task = TaskGraph.from_spec(GraphSpec.from_json(spec))["t"]
    assert (task.verify, task.votes) == (None, None)


async def test_resume_keeps_verify_and_votes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/runs.db"
    broken = {"now": True}
    answers = iter(["Lyon", "Paris"])

    def answer(request: ModelRequest) -> str:
        if broken["now"]:
            raise BadRequestError("the provider is misconfigured", model="mini")
        return next(answers)

    worker_model = FunctionModel(answer, name="mini")
    judge_model = FunctionModel(lambda request: {"index": 2, "reason": "Paris"}, name="nano")
    worker = Agent("w", worker_model)
    judge = Agent("judge", judge_model)
    g = TaskGraph()
    g.add("capital", agent="w", prompt=ASK, verify="judge", votes=2)

    first = await Orchestrator(workers=[worker, judge], memory=url, retry=FAST).execute(
        g, run_id="verify-1"
    )
    assert first.tasks["capital"].status == "failed"
    assert judge_model.calls == 0

    broken["now"] = False
    worker_model.requests.clear()
    again = await Orchestrator(workers=[worker, judge], memory=url, retry=FAST).resume("verify-1")

    assert again.output == "Paris"  # the judge's pick: verify= was kept
    assert worker_model.calls == 2  # votes=2 was kept
    assert judge_model.calls == 1
    assert judge_model.requests[0].output_schema == Choice.model_json_schema()


def test_the_auto_call_guard_counts_votes_and_judges() -> None:
    from delegate.orchestrator._setup import answers as _answers

    judge = Agent("judge", FunctionModel(lambda r: "ok"))
    voter = Agent("voter", FunctionModel(lambda r: "x"), votes=5, verify=judge)
    plain = Agent("plain", FunctionModel(lambda r: "x"))
    graph = TaskGraph()
    graph.add("a", agent=voter, prompt="A.")
    graph.add("b", agent=plain, prompt="B.", votes=3)
    graph.add("c", agent=plain, prompt="C.")
    graph.add("d", fn=lambda ctx: 1)
    agents = {"voter": voter, "plain": plain}
    assert _answers(list(graph), agents) == (5 + 1) + 3 + 1
