"""Strategies (`strategy=`): best-of-n, mixture-of-agents and self-refine, through `run_checked`.

Exact call counts per agent, which answer wins and why, the prompts each agent saw, the decisions
told to `on_check`, errors before any call, and budgets that hold under concurrency (counted by
the fakes themselves).
"""

from __future__ import annotations

import json
import math
import re
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

from delegate.agents.agent import Agent, AgentResult
from delegate.agents.limits import Budget
from delegate.agents.models import ModelRequest, Usage
from delegate.agents.tokens import count_pieces
from delegate.errors import BadRequestError, BudgetExceeded, ConfigError, VerificationFailed
from delegate.orchestrator._strategies import AGGREGATE_PROMPT, SCORE_PROMPT, Score
from delegate.orchestrator.budget import BudgetLedger
from delegate.orchestrator.calls import CallGate, RunAccount
from delegate.orchestrator.checks import JUDGE_PROMPT, RETRY_PROMPT, run_checked
from delegate.orchestrator.events import Event, TaskChecked
from delegate.orchestrator.graph import TaskGraph
from delegate.orchestrator.run import Orchestrator, RunResult
from delegate.orchestrator.strategies import BestOfN, MixtureOfAgents, SelfRefine
from delegate.testing import FunctionModel, ScriptedModel

pytestmark = pytest.mark.anyio

ASK = "Name a prime number above 10."
PASS: dict[str, Any] = {"passed": True, "feedback": ""}


def fail(feedback: str) -> dict[str, Any]:
    return {"passed": False, "feedback": feedback}


def prompt_of(request: ModelRequest) -> str:
    content: str = request.messages[-1]["content"]
    return content


def prompts(model: FunctionModel | ScriptedModel) -> list[str]:
    return [prompt_of(request) for request in model.requests]


def answer_in(prompt: str) -> str:
    """The answer quoted in a judge's prompt (after its "## Answer" heading)."""
    return prompt.rpartition("## Answer\n")[2]


class Notes:
    """An `on_check` listener that keeps every decision told."""

    def __init__(self) -> None:
        self.told: list[dict[str, Any]] = []

    def __call__(self, **decision: Any) -> None:
        self.told.append(decision)

    def of(self, check: str, *keys: str) -> list[tuple[Any, ...]]:
        """The decisions of kind `check`, as tuples of `keys`, sorted (concurrent order varies)."""
        rows = [tuple(d[k] for k in keys) for d in self.told if d["check"] == check]
        return sorted(rows, key=repr)


def scorer(scores: dict[str, float], reason: str = "because") -> FunctionModel:
    """A judge that scores each answer by its text, as `scores` says."""
    return FunctionModel(
        lambda request: {"score": scores[answer_in(prompt_of(request))], "reason": reason},
        name="judge-model",
    )


def expected_usage(*models: FunctionModel | ScriptedModel) -> tuple[int, int]:
    """The calls and input tokens the fakes billed for every request they got."""
    return (
        sum(model.calls for model in models),
        sum(model.count_tokens(request) for model in models for request in model.requests),
    )


@pytest.fixture
def score_module(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """An importable module `strategy_scores` for `score="strategy_scores:<name>"`."""
    module = types.ModuleType("strategy_scores")
    module.seen = []  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "strategy_scores", module)
    return module


def add(module: types.ModuleType, name: str, fn: Callable[..., Any]) -> str:
    setattr(module, name, fn)
    return f"strategy_scores:{name}"


class Person(BaseModel):
    name: str
    year: int


# --- best-of-n ---------------------------------------------------------------------------------


async def test_best_of_n_keeps_the_answer_its_judge_scores_highest() -> None:
    worker_model = ScriptedModel(["11", "13", "12", "17"], name="mini")
    judge_model = scorer({"11": 6, "13": 9, "12": 0, "17": 8})
    judge = Agent("scorer", judge_model)
    notes = Notes()

    result = await run_checked(
        Agent("w", worker_model),
        ASK,
        strategy=BestOfN(n=4, judge="scorer"),
        agents={"scorer": judge},
        on_check=notes,
    )

    assert (result.output, result.agent, result.model) == ("13", "w", "mini")
    assert (worker_model.calls, judge_model.calls) == (4, 4)
    assert prompts(worker_model) == [ASK] * 4
    assert sorted(prompts(judge_model)) == sorted(
        SCORE_PROMPT.format(task=ASK, answer=answer) for answer in ("11", "13", "12", "17")
    )
    # Each judge call asked for a Score.
    assert all(r.output_schema is not None for r in judge_model.requests)
    assert notes.of("score", "chosen", "feedback", "judge", "samples") == [
        (1, "score 6: because", "scorer", 4),
        (2, "score 9: because", "scorer", 4),
        (3, "score 0: because", "scorer", 4),
        (4, "score 8: because", "scorer", 4),
    ]
    assert notes.of("best", "chosen", "feedback", "agent") == [
        (2, "scores 6, 9, 0, 8: answer 2 kept (ties go to the earliest)", "w")
    ]
    # The result carries every call: 4 answers and 4 scores.
    assert (result.calls, result.usage.calls) == (8, 8)
    assert (result.usage.calls, result.usage.input_tokens) == expected_usage(
        worker_model, judge_model
    )


async def test_best_of_n_ties_go_to_the_earliest_answer() -> None:
    worker_model = ScriptedModel(["B", "A", "C"])
    judge = Agent("scorer", scorer({"A": 7, "B": 7, "C": 3}))
    result = await run_checked(
        Agent("w", worker_model),
        ASK,
        strategy=BestOfN(n=3, judge="scorer"),
        agents={"scorer": judge},
    )
    assert result.output == "B"


async def test_best_of_n_with_a_scoring_function_makes_no_judge_calls(
    score_module: types.ModuleType,
) -> None:
    def by_length(output: Person) -> int:
        score_module.seen.append(output)
        return len(output.name)

    path = add(score_module, "by_length", by_length)
    answers = [{"name": "Al", "year": 1}, {"name": "Alfred", "year": 2}, {"name": "Ada", "year": 3}]
    worker_model = ScriptedModel(answers)
    notes = Notes()

    result = await run_checked(
        Agent("w", worker_model, output_type=Person),
        "Who?",
        strategy=BestOfN(n=3, score=path),
        on_check=notes,
    )

    assert result.output == Person(name="Alfred", year=2)
    assert worker_model.calls == result.calls == 3
    # The function got each answer's output, as the output type.
    assert sorted(p.name for p in score_module.seen) == ["Ada", "Al", "Alfred"]
    assert notes.of("score", "chosen", "feedback", "judge") == [
        (1, "score 2", path),
        (2, "score 6", path),
        (3, "score 3", path),
    ]
    assert notes.of("best", "chosen") == [(2,)]


async def test_an_async_scoring_function_is_awaited(score_module: types.ModuleType) -> None:
    async def negative(output: str) -> float:
        await anyio.lowlevel.checkpoint()
        return -float(output)

    path = add(score_module, "negative", negative)
    result = await run_checked(
        Agent("w", ScriptedModel(["5", "2", "9"])), ASK, strategy=BestOfN(n=3, score=path)
    )
    assert result.output == "2"


async def test_each_best_of_n_draw_is_a_request_of_its_own(score_module: types.ModuleType) -> None:
    # Under the call cache identical requests share one answer; the draws must not.
    worker_model = ScriptedModel(["a", "b", "c"])
    path = add(score_module, "zero", lambda output: 0)
    await run_checked(Agent("w", worker_model), ASK, strategy=BestOfN(n=3, score=path))
    assert sorted(r.sample or 0 for r in worker_model.requests) == [0, 1, 2]


@pytest.mark.parametrize(
    ("fn", "expected"),
    [
        (lambda output: 1 / 0, r"raised ZeroDivisionError on answer \d: division by zero"),
        (lambda output: math.nan, r"returned nan for answer \d; make it return a finite number"),
        (lambda output: math.inf, r"returned inf for answer \d"),
        (lambda output: "high", r"returned str for answer \d; make it return a number"),
        (lambda output: True, r"returned bool for answer \d"),
    ],
)
async def test_a_bad_scoring_function_fails_with_its_name(
    score_module: types.ModuleType, fn: Callable[[Any], Any], expected: str
) -> None:
    path = add(score_module, "bad", fn)
    with pytest.raises(ConfigError, match=f"scoring function 'strategy_scores:bad' {expected}"):
        await run_checked(
            Agent("w", ScriptedModel(["1", "2"])), ASK, strategy=BestOfN(n=2, score=path)
        )


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("strategy_scores:missing", "its scoring function 'strategy_scores:missing' cannot be"),
        ("no_such_module_xyz:fn", "its scoring function 'no_such_module_xyz:fn' cannot be"),
        ("strategy_scores", "score 'strategy_scores' is not an import path"),
        ("strategy_scores:seen", "score 'strategy_scores:seen' is not callable"),
    ],
)
async def test_a_scoring_function_that_cannot_be_loaded_is_refused_before_any_call(
    score_module: types.ModuleType, path: str, expected: str
) -> None:
    worker_model = ScriptedModel([])
    with pytest.raises(ConfigError, match=expected):
        await run_checked(Agent("w", worker_model), ASK, strategy=BestOfN(n=2, score=path))
    assert worker_model.calls == 0


async def test_best_of_n_with_nothing_to_score_says_what_to_add() -> None:
    worker_model = ScriptedModel([])
    with pytest.raises(ConfigError) as caught:
        await run_checked(Agent("w", worker_model), ASK, strategy=BestOfN(n=2))
    message = str(caught.value)
    assert "strategy 'best_of_n' has nothing to score its answers" in message
    assert "judge='<a worker's name>'" in message
    assert "score='package.module:function'" in message
    assert "verify= judge" in message
    assert worker_model.calls == 0


async def test_best_of_n_scored_by_the_verify_judge_is_not_judged_again() -> None:
    worker_model = ScriptedModel(["11", "12"])
    judge_model = scorer({"11": 8, "12": 2})
    result = await run_checked(
        Agent("w", worker_model),
        ASK,
        verify=Agent("j", judge_model),
        strategy=BestOfN(n=2),
    )
    assert result.output == "11"
    assert (worker_model.calls, judge_model.calls) == (2, 2)  # two scores, no verdict
    assert all(p.startswith("Score the answer") for p in prompts(judge_model))


async def test_best_of_n_scored_by_another_judge_has_its_winner_verified() -> None:
    worker_model = ScriptedModel(["11", "12", "13"])  # the third answers the re-ask
    verify_model = ScriptedModel([fail("12 is not prime"), PASS])
    notes = Notes()
    result = await run_checked(
        Agent("w", worker_model),
        ASK,
        verify=Agent("j", verify_model),
        strategy=BestOfN(n=2, judge="scorer"),
        agents={"scorer": Agent("scorer", scorer({"11": 1, "12": 9}))},
        on_check=notes,
    )
    assert result.output == "13"
    assert (worker_model.calls, verify_model.calls) == (3, 2)
    assert prompts(verify_model)[0] == JUDGE_PROMPT.format(task=ASK, answer="12")
    assert prompts(worker_model)[2] == RETRY_PROMPT.format(
        task=ASK, answer="12", feedback="12 is not prime"
    )
    assert notes.of("judge", "passed", "judge") == [(False, "j"), (True, "j")]
    assert result.calls == 2 + 2 + 1 + 2


async def test_a_failing_answer_cancels_the_others_and_fails_as_itself() -> None:
    started = anyio.Event()

    async def answer(request: ModelRequest) -> str:
        if request.sample == 1:
            await started.wait()
            raise BadRequestError("bad request", model="mini")
        started.set()
        await anyio.sleep_forever()  # cancelled by the failure
        raise AssertionError("unreachable")

    judge_model = ScriptedModel([])
    with anyio.fail_after(10), pytest.raises(BadRequestError):
        await run_checked(
            Agent("w", FunctionModel(answer)),
            ASK,
            strategy=BestOfN(n=3, judge="scorer"),
            agents={"scorer": Agent("scorer", judge_model)},
        )
    assert judge_model.calls == 0


async def test_a_structured_judge_cannot_score() -> None:
    person = Agent("person", ScriptedModel([]), output_type=Person)
    with pytest.raises(ConfigError, match="the judge 'person' has output_type Person"):
        await run_checked(
            Agent("w", ScriptedModel([])),
            ASK,
            strategy=BestOfN(judge="person"),
            agents={"person": person},
        )


def test_a_score_is_bounded_and_finite() -> None:
    assert Score(score=10, reason="").score == 10
    for bad in (-0.5, 10.5, math.nan, math.inf):
        with pytest.raises(ValueError, match="score"):
            Score(score=bad, reason="")


# --- mixture-of-agents -------------------------------------------------------------------------


async def test_mixture_of_agents_aggregates_the_numbered_proposals() -> None:
    # The first proposer answers last: proposals are numbered in the proposers' order anyway.
    first_model = FunctionModel(lambda request: "Seventeen.", latency=0.05, name="m1")
    second_model = FunctionModel(lambda request: "13", name="m2")
    third_model = FunctionModel(lambda request: "It is 12.", name="m3")
    aggregator_model = ScriptedModel(["13"], name="m4")
    agents = {
        "a": Agent("a", first_model),
        "b": Agent("b", second_model),
        "c": Agent("c", third_model),
        "agg": Agent("agg", aggregator_model),
    }
    worker_model = ScriptedModel([])
    notes = Notes()

    result = await run_checked(
        Agent("w", worker_model),
        ASK,
        strategy=MixtureOfAgents(proposers=("a", "b", "c"), aggregator="agg"),
        agents=agents,
        on_check=notes,
    )

    assert (result.output, result.agent, result.model) == ("13", "agg", "m4")
    assert [m.calls for m in (first_model, second_model, third_model, aggregator_model)] == [1] * 4
    assert worker_model.calls == 0
    assert prompts(first_model) == prompts(second_model) == prompts(third_model) == [ASK]
    assert prompts(aggregator_model) == [
        AGGREGATE_PROMPT.format(
            task=ASK,
            count=3,
            proposals="## Proposal 1\nSeventeen.\n\n## Proposal 2\n13\n\n## Proposal 3\nIt is 12.",
        )
    ]
    assert notes.of("propose", "chosen", "agent", "feedback", "samples") == [
        (1, "a", "Seventeen.", 3),
        (2, "b", "13", 3),
        (3, "c", "It is 12.", 3),
    ]
    assert notes.of("aggregate", "agent", "samples") == [("agg", 3)]
    assert (result.calls, result.usage.calls) == (4, 4)
    assert (result.usage.calls, result.usage.input_tokens) == expected_usage(
        first_model, second_model, third_model, aggregator_model
    )


async def test_the_tasks_worker_aggregates_as_its_output_type() -> None:
    worker_model = ScriptedModel([{"name": "Ada", "year": 1815}])
    proposers = {
        "a": Agent("a", ScriptedModel(["Ada Lovelace, 1815"])),
        "b": Agent("b", ScriptedModel(["Ada, born 1816"])),
    }
    result = await run_checked(
        Agent("w", worker_model, output_type=Person),
        "Who?",
        strategy=MixtureOfAgents(proposers=("a", "b")),
        agents=proposers,
    )
    assert result.output == Person(name="Ada", year=1815)
    assert worker_model.calls == 1
    assert "## Proposal 2\nAda, born 1816" in prompts(worker_model)[0]


async def test_a_text_aggregator_is_asked_for_a_structured_tasks_output_type() -> None:
    aggregator_model = ScriptedModel([{"name": "Ada", "year": 1815}])
    agents = {
        "a": Agent("a", ScriptedModel([{"name": "Ada", "year": 1815}]), output_type=Person),
        "b": Agent("b", ScriptedModel(["Ada Lovelace"])),
        "agg": Agent("agg", aggregator_model),
    }
    result = await run_checked(
        Agent("w", ScriptedModel([]), output_type=Person),
        "Who?",
        strategy=MixtureOfAgents(proposers=("a", "b"), aggregator="agg"),
        agents=agents,
    )
    assert result.output == Person(name="Ada", year=1815)
    assert aggregator_model.requests[0].output_schema is not None
    # A structured proposal is shown as JSON.
    assert '## Proposal 1\n{"name":"Ada","year":1815}' in prompts(aggregator_model)[0]


async def test_an_unknown_proposer_is_refused_with_a_suggestion_before_any_call() -> None:
    known_model = ScriptedModel([])
    with pytest.raises(ConfigError) as caught:
        await run_checked(
            Agent("w", ScriptedModel([])),
            ASK,
            strategy=MixtureOfAgents(proposers=("writer", "critic")),
            agents={"writer": Agent("writer", known_model), "critique": Agent("c", known_model)},
        )
    assert str(caught.value) == (
        "Agent 'w': strategy 'mixture_of_agents' names proposer 'critic', which is not one of "
        "the run's workers (did you mean 'critique'?); add it to Orchestrator(workers=[...]) or "
        "fix the name"
    )
    assert known_model.calls == 0


async def test_a_structured_aggregator_cannot_answer_a_text_task() -> None:
    agents = {
        "a": Agent("a", ScriptedModel([])),
        "b": Agent("b", ScriptedModel([])),
        "agg": Agent("agg", ScriptedModel([]), output_type=Person),
    }
    with pytest.raises(ConfigError, match="aggregator 'agg' answers with output_type Person"):
        await run_checked(
            Agent("w", ScriptedModel([])),
            ASK,
            strategy=MixtureOfAgents(proposers=("a", "b"), aggregator="agg"),
            agents=agents,
        )


async def test_a_mixtures_answer_is_verified() -> None:
    verify_model = ScriptedModel([PASS])
    agents = {"a": Agent("a", ScriptedModel(["13"])), "b": Agent("b", ScriptedModel(["17"]))}
    result = await run_checked(
        Agent("w", ScriptedModel(["13 or 17"])),
        ASK,
        verify=Agent("j", verify_model),
        strategy=MixtureOfAgents(proposers=("a", "b")),
        agents=agents,
    )
    assert result.output == "13 or 17"
    assert prompts(verify_model) == [JUDGE_PROMPT.format(task=ASK, answer="13 or 17")]
    assert result.calls == 4


# --- self-refine -------------------------------------------------------------------------------


async def test_self_refine_stops_once_the_critique_passes() -> None:
    worker_model = ScriptedModel(["a prime", "13"])
    critic_model = ScriptedModel([fail("name one number"), PASS, PASS])
    notes = Notes()

    result = await run_checked(
        Agent("w", worker_model),
        ASK,
        strategy=SelfRefine(rounds=3, critic="critic"),
        agents={"critic": Agent("critic", critic_model)},
        on_check=notes,
    )

    assert result.output == "13"
    assert (worker_model.calls, critic_model.calls) == (2, 2)
    assert prompts(worker_model) == [
        ASK,
        RETRY_PROMPT.format(task=ASK, answer="a prime", feedback="name one number"),
    ]
    assert prompts(critic_model) == [
        JUDGE_PROMPT.format(task=ASK, answer="a prime"),
        JUDGE_PROMPT.format(task=ASK, answer="13"),
    ]
    assert [
        (d["check"], d["chosen"], d["samples"], d["passed"], d["judge"], d["feedback"])
        for d in notes.told
    ] == [
        ("critique", 1, 3, False, "critic", "name one number"),
        ("critique", 2, 3, True, "critic", ""),
    ]
    assert (result.calls, result.usage.calls) == (4, 4)


async def test_self_refine_keeps_the_last_revision_after_its_rounds() -> None:
    strategy = SelfRefine(rounds=2, critic="critic")
    worker_model = ScriptedModel(["1", "2", "3"])
    critic_model = ScriptedModel([fail("not prime"), fail("still not prime")])
    result = await run_checked(
        Agent("w", worker_model),
        ASK,
        strategy=strategy,
        agents={"critic": Agent("critic", critic_model)},
    )
    assert result.output == "3"  # kept without another critique
    assert (worker_model.calls, critic_model.calls) == (3, 2)
    assert result.calls == strategy.max_calls() == 5
    assert prompts(worker_model)[2] == RETRY_PROMPT.format(
        task=ASK, answer="2", feedback="still not prime"
    )


async def test_without_a_critic_or_judge_the_worker_critiques_itself() -> None:
    def worker(request: ModelRequest) -> Any:
        prompt = prompt_of(request)
        if prompt.startswith("Check whether"):
            return PASS if answer_in(prompt) == "13" else fail("give a number")
        return "13" if "A reviewer rejected it" in prompt else "a prime"

    worker_model = FunctionModel(worker)
    notes = Notes()
    result = await run_checked(
        Agent("w", worker_model), ASK, strategy=SelfRefine(rounds=2), on_check=notes
    )
    assert result.output == "13"
    assert worker_model.calls == 4  # answer, critique, revision, critique
    assert [r.output_schema is not None for r in worker_model.requests] == [
        False,
        True,
        False,
        True,
    ]
    assert notes.of("critique", "chosen", "judge", "passed") == [(1, "w", False), (2, "w", True)]


async def test_self_refine_criticized_by_the_verify_judge_is_not_judged_again() -> None:
    worker_model = ScriptedModel(["1", "13"])
    judge_model = ScriptedModel([fail("1 is not prime"), PASS])
    result = await run_checked(
        Agent("w", worker_model),
        ASK,
        verify=Agent("j", judge_model),
        strategy=SelfRefine(rounds=2),
    )
    assert result.output == "13"
    assert (worker_model.calls, judge_model.calls) == (2, 2)


async def test_self_refines_unchecked_last_revision_is_verified() -> None:
    # The verify judge critiqued both rounds, but the last revision was never judged: it is.
    worker_model = ScriptedModel(["1", "4", "13"])
    judge_model = ScriptedModel([fail("not prime"), fail("not prime either"), PASS])
    result = await run_checked(
        Agent("w", worker_model),
        ASK,
        verify=Agent("j", judge_model),
        strategy=SelfRefine(rounds=2),
    )
    assert result.output == "13"
    assert (worker_model.calls, judge_model.calls) == (3, 3)
    assert prompts(judge_model)[2] == JUDGE_PROMPT.format(task=ASK, answer="13")


async def test_a_passed_critique_by_another_critic_still_faces_the_verify_judge() -> None:
    worker_model = ScriptedModel(["13", "17", "19"])
    judge_model = ScriptedModel([fail("give the smallest"), fail("smallest!"), fail("no")])
    with pytest.raises(VerificationFailed) as caught:
        await run_checked(
            Agent("w", worker_model),
            ASK,
            verify=Agent("j", judge_model),
            strategy=SelfRefine(rounds=1, critic="critic"),
            agents={"critic": Agent("critic", ScriptedModel([PASS]))},
        )
    assert caught.value.judge == "j"
    assert (worker_model.calls, judge_model.calls) == (2, 2)  # answer + re-ask, both rejected


async def test_a_structured_critic_is_refused() -> None:
    with pytest.raises(ConfigError, match="the judge 'person' has output_type Person"):
        await run_checked(
            Agent("w", ScriptedModel([])),
            ASK,
            strategy=SelfRefine(critic="person"),
            agents={"person": Agent("person", ScriptedModel([]), output_type=Person)},
        )


# --- strategies and votes, budgets -------------------------------------------------------------


@pytest.mark.parametrize(
    "strategy",
    [BestOfN(score="strategy_scores:x"), MixtureOfAgents(proposers=("a", "b")), SelfRefine()],
)
async def test_a_strategy_and_votes_are_one_or_the_other(strategy: Any) -> None:
    worker_model = ScriptedModel([])
    with pytest.raises(ConfigError, match="use votes or a strategy, not both"):
        await run_checked(Agent("w", worker_model), ASK, votes=3, strategy=strategy)
    assert worker_model.calls == 0


@dataclass
class _Task:
    """What a `CallGate` charges: a task's usage and first model."""

    task_id: str
    usage: Usage = field(default_factory=Usage)
    model: str | None = None


async def _concurrent_best_of_n(budget: Budget, tasks: int = 10, n: int = 4) -> dict[str, Any]:
    """`tasks` best-of-n tasks at once under one run budget; what the fakes and ledger saw."""
    answers = {"w": "13", "j": json.dumps({"score": 5, "reason": "ok"})}
    worker_model = FunctionModel(
        lambda r: answers["w"], input_price=1.0, output_price=2.0, name="w"
    )
    judge_model = FunctionModel(lambda r: answers["j"], input_price=1.0, output_price=2.0, name="j")
    ledger = BudgetLedger()
    account = RunAccount(ledger, ledger.open("run", budget), {})
    worker, judge = Agent("w", worker_model), Agent("scorer", judge_model)
    outcomes: list[AgentResult[Any] | Exception] = []

    async def one(index: int) -> None:
        gate = CallGate(account, _Task(f"t{index}"))
        try:
            outcomes.append(
                await run_checked(
                    worker,
                    ASK,
                    caller=gate,
                    strategy=BestOfN(n=n, judge="scorer"),
                    agents={"scorer": judge},
                )
            )
        except BudgetExceeded as exc:
            outcomes.append(exc)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            for index in range(tasks):
                group.start_soon(one, index)
    sent = worker_model.requests + judge_model.requests
    return {
        "calls": len(sent),
        # The fakes' own bill: each request they got, at their price, for the answer they gave.
        "usd": sum(
            m.price.cost(m.count_tokens(r), count_pieces(answers[m.name], m.name))
            for m in (worker_model, judge_model)
            for r in m.requests
        ),
        "done": sum(isinstance(o, AgentResult) for o in outcomes),
        "done_calls": {o.calls for o in outcomes if isinstance(o, AgentResult)},
        "refused": sum(isinstance(o, BudgetExceeded) for o in outcomes),
        "spent": account.book.total,
    }


async def test_concurrent_best_of_n_never_sends_more_calls_than_the_budget() -> None:
    seen = await _concurrent_best_of_n(Budget(calls=20))
    # Counted by the fakes themselves: nothing beyond the budget was sent.
    assert seen["calls"] <= 20
    assert seen["spent"].calls == seen["calls"]
    # 10 tasks × 8 calls do not fit 20: some tasks are refused, and a task that finished made
    # all 8 of its calls.
    assert seen["refused"] >= 1
    assert seen["done"] + seen["refused"] == 10
    assert seen["done"] <= 2
    assert seen["done_calls"] <= {8}  # 4 answers and 4 scores


async def test_concurrent_best_of_n_never_spends_more_than_the_usd_budget() -> None:
    limit = 0.002
    seen = await _concurrent_best_of_n(Budget(usd=limit))
    assert seen["refused"] >= 1
    # Counted by the fakes themselves: no more than the budget was spent, and the run's book
    # agrees with them.
    assert seen["usd"] <= limit
    assert seen["spent"].cost_usd == pytest.approx(seen["usd"])


def test_the_prompts_name_their_placeholders() -> None:
    assert SCORE_PROMPT.format(task="T", answer="A").endswith("## Task\nT\n\n## Answer\nA")
    text = AGGREGATE_PROMPT.format(task="T", count=2, proposals="P")
    assert text.startswith("T\n\n")
    assert text.endswith("\n\nP")
    assert "The 2 answers" in text
    assert json.loads(Score(score=3, reason="r").model_dump_json()) == {"score": 3, "reason": "r"}


# --- in a run ----------------------------------------------------------------------------------


async def _execute(
    graph: TaskGraph, workers: list[Agent[Any]], budget: Budget | None = None, **options: Any
) -> RunResult:
    options.setdefault("memory", None)
    with anyio.fail_after(10):  # a guard against hangs, not a timing assertion
        return await Orchestrator(workers=workers, **options).execute(graph, budget=budget)


def _checks(events: list[Event]) -> list[tuple[str, str, int | None]]:
    return sorted((e.task_id, e.check, e.chosen) for e in events if isinstance(e, TaskChecked))


async def test_a_run_keeps_the_best_of_n_and_counts_every_call_by_agent() -> None:
    worker_model = ScriptedModel(["11", "13", "12"], name="mini")
    judge_model = scorer({"11": 5, "13": 9, "12": 1})
    events: list[Event] = []
    g = TaskGraph()
    g.add("prime", agent="w", prompt=ASK, strategy=BestOfN(n=3, judge="scorer"))

    result = await _execute(
        g,
        [Agent("w", worker_model), Agent("scorer", judge_model)],
        on_event=events.append,
    )

    assert result.output == "13"
    assert (worker_model.calls, judge_model.calls) == (3, 3)
    assert result.tasks["prime"].usage.calls == 6
    assert {name: u.calls for name, u in result.usage.by_agent.items()} == {"w": 3, "scorer": 3}
    assert _checks(events) == [
        ("prime", "best", 2),
        ("prime", "score", 1),
        ("prime", "score", 2),
        ("prime", "score", 3),
    ]


async def test_a_run_aggregates_a_mixture_of_agents() -> None:
    models = {name: ScriptedModel([f"{name} says 13"], name=name) for name in ("a", "b", "agg")}
    g = TaskGraph()
    g.add(
        "prime",
        agent="w",
        prompt=ASK,
        strategy=MixtureOfAgents(proposers=("a", "b"), aggregator="agg"),
    )

    result = await _execute(
        g,
        [Agent("w", ScriptedModel([])), *(Agent(name, m) for name, m in models.items())],
    )

    assert result.output == "agg says 13"
    assert {name: u.calls for name, u in result.usage.by_agent.items()} == {
        "a": 1,
        "b": 1,
        "agg": 1,
    }
    assert "## Proposal 2\nb says 13" in prompts(models["agg"])[0]


async def test_a_run_refines_until_the_critic_passes_and_verifies_once() -> None:
    worker_model = ScriptedModel(["1", "13"])
    critic_model = ScriptedModel([fail("1 is not prime"), PASS])
    judge_model = ScriptedModel([PASS])
    g = TaskGraph()
    g.add(
        "prime",
        agent="w",
        prompt=ASK,
        verify="judge",
        strategy=SelfRefine(rounds=3, critic="critic"),
    )

    result = await _execute(
        g,
        [
            Agent("w", worker_model),
            Agent("critic", critic_model),
            Agent("judge", judge_model),
        ],
    )

    assert result.output == "13"
    assert {name: u.calls for name, u in result.usage.by_agent.items()} == {
        "w": 2,
        "critic": 2,
        "judge": 1,
    }


async def test_an_unknown_strategy_worker_fails_the_run_before_any_call() -> None:
    worker_model = ScriptedModel([])
    g = TaskGraph()
    g.add("prime", agent="w", prompt=ASK, strategy=BestOfN(judge="scroer"))
    with pytest.raises(ConfigError, match="did you mean 'scorer'"):
        await _execute(g, [Agent("w", worker_model), Agent("scorer", ScriptedModel([]))])
    assert worker_model.calls == 0


async def test_a_raising_scoring_function_fails_its_task_once_with_its_name(
    score_module: types.ModuleType,
) -> None:
    path = add(score_module, "broken", lambda output: int(output) / 0)
    worker_model = ScriptedModel(["11", "13"])
    g = TaskGraph()
    g.add("prime", agent="w", prompt=ASK, strategy=BestOfN(n=2, score=path))

    result = await _execute(g, [Agent("w", worker_model)])

    task = result.tasks["prime"]
    assert (task.status, task.attempts, worker_model.calls) == ("failed", 1, 2)  # not retried
    assert "scoring function 'strategy_scores:broken' raised ZeroDivisionError" in (
        task.error or ""
    )


async def test_ten_best_of_n_tasks_at_once_never_spend_past_the_run_budget() -> None:
    answers = {"w": "13", "j": json.dumps({"score": 5, "reason": "ok"})}
    worker_model = FunctionModel(
        lambda r: answers["w"], input_price=1.0, output_price=2.0, name="w"
    )
    judge_model = FunctionModel(lambda r: answers["j"], input_price=1.0, output_price=2.0, name="j")
    g = TaskGraph()
    for index in range(10):
        g.add(f"t{index}", agent="w", prompt=f"{ASK} ({index})", strategy=BestOfN(judge="j"))
    limit = 0.003

    result = await _execute(
        g,
        [Agent("w", worker_model), Agent("j", judge_model)],
        budget=Budget(usd=limit),
        max_concurrency=10,
    )

    # Counted by the fakes themselves, at their prices, for the answers they gave.
    billed = sum(
        m.price.cost(m.count_tokens(r), count_pieces(answers[m.name], m.name))
        for m in (worker_model, judge_model)
        for r in m.requests
    )
    assert billed <= limit
    assert result.usage.cost_usd == pytest.approx(billed)
    done = [t for t in result.tasks.values() if t.status == "succeeded"]
    assert 1 <= len(done) < 10
    assert {t.usage.calls for t in done} == {8}
    assert all("budget" in (t.error or "") for t in result.tasks.values() if t not in done)


async def test_a_stored_run_reports_each_strategy_decision(tmp_path: Path) -> None:
    from delegate.memory.store import Store
    from delegate.observe import stored_report_html

    url = f"sqlite:///{tmp_path}/runs.db"
    g = TaskGraph()
    g.add("best", agent="w", prompt=ASK, strategy=BestOfN(n=2, judge="scorer"))
    g.add("mix", agent="w", prompt=ASK, strategy=MixtureOfAgents(proposers=("a", "b")))
    g.add("refine", agent="r", prompt=ASK, strategy=SelfRefine(rounds=1, critic="critic"))
    workers = [
        Agent("w", FunctionModel(lambda r: "agg" if "Proposal" in prompt_of(r) else "11")),
        Agent("scorer", scorer({"11": 7})),
        Agent("a", ScriptedModel(["from a"])),
        Agent("b", ScriptedModel(["from b"])),
        Agent("r", ScriptedModel(["1", "13"])),
        Agent("critic", ScriptedModel([fail("1 is not prime")])),
    ]
    result = await _execute(g, workers, memory=url)
    assert result.status == "succeeded", result.error

    with Store.open(url) as store:
        text = stored_report_html(store, result.run_id)

    items = sorted(re.findall(r'<li data-check="[^"]*".*?</li>', text))
    assert items == sorted(
        [
            '<li data-check="score">attempt 1: scorer scored answer 1 of 2 (by w): '
            '<q class="feedback">score 7: because</q></li>',
            '<li data-check="score">attempt 1: scorer scored answer 2 of 2 (by w): '
            '<q class="feedback">score 7: because</q></li>',
            '<li data-check="best">attempt 1: best of 2: answer 1 kept: <q class="feedback">'
            "scores 7, 7: answer 1 kept (ties go to the earliest)</q></li>",
            '<li data-check="propose">attempt 1: a proposed answer 1 of 2: '
            '<q class="feedback">from a</q></li>',
            '<li data-check="propose">attempt 1: b proposed answer 2 of 2: '
            '<q class="feedback">from b</q></li>',
            '<li data-check="aggregate">attempt 1: w aggregated the 2 proposals</li>',
            '<li data-check="critique" data-passed="false">attempt 1: critic critic rejected the '
            "answer of r (self-refine round 1 of at most 1): "
            '<q class="feedback">1 is not prime</q></li>',
        ]
    )
