"""Adaptive votes (`votes=AdaptiveVotes(...)`): the stopping rule, exact sample counts, the budget
cap on samples, the vote record, and distinct samples under the call cache."""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import anyio
import pytest
from _fake_openai_server import FakeOpenAIServer
from pydantic import BaseModel

from delegate import Agent, Orchestrator, TaskChecked, TaskGraph, VoteRecord
from delegate.agents.limits import Budget
from delegate.agents.models import LiteLLMModel, Message, ModelRequest, ModelResponse, Usage
from delegate.errors import BudgetExceeded, ConfigError, WorkflowError
from delegate.memory.store import Store
from delegate.observe import stored_report_html
from delegate.orchestrator._vote_rules import beta, cannot_lose, leader_chance
from delegate.orchestrator.checks import _plurality, run_checked
from delegate.orchestrator.events import Event
from delegate.orchestrator.run import RunResult
from delegate.orchestrator.scheduler import RetryPolicy
from delegate.orchestrator.strategies import AdaptiveVotes
from delegate.testing import FunctionModel, ScriptedModel
from delegate.workflows import AgentStep, load_workflow_text
from delegate.workflows.spec import AdaptiveVotesSpec

pytestmark = pytest.mark.anyio

FAST = RetryPolicy(max_retries=2, base_delay=0.001, max_delay=0.01)
ASK = "What is the capital of France?"


class Person(BaseModel):
    name: str
    year: int


def _cycle(*answers: str) -> Callable[[ModelRequest], str]:
    """A model function answering `answers` in turn, forever."""
    turns: Iterator[str] = itertools.cycle(answers)
    return lambda request: next(turns)


async def _run(graph: TaskGraph, **options: Any) -> tuple[RunResult, list[TaskChecked]]:
    budget = options.pop("budget", None)
    events: list[Event] = []
    orchestrator = Orchestrator(retry=FAST, memory=options.pop("memory", None), **options)
    orchestrator.subscribe(events.append)
    with anyio.fail_after(10):  # a guard against hangs, not a timing assertion
        result = await orchestrator.execute(graph, budget=budget)
    return result, [event for event in events if isinstance(event, TaskChecked)]


# --- the stopping rule --------------------------------------------------------------------------
#
# "cannot_lose": each answer seen c times weighs c + 1/2 in a Pólya urn, the answers not seen yet 1
# between them; a rival catches up (a tie counts as lost) when it ends level with the leader.


@pytest.mark.parametrize(
    ("counts", "left", "probability"),
    [
        # Two agree, 3 left (of 5): only an unseen answer taking all 3 draws beats them, with
        # chance 1·2·3 / (3.5·4.5·5.5) (the urn: leader 2.5, unseen 1).
        ([2], 3, 1 - 6 / 86.625),
        # Three agree, 7 left (of 10): the unseen answer needs k ≥ 5 of 7, with chance
        # C(7, k)·k!·(3.5)↑(7 - k) / (4.5)↑7 (↑: rising factorial) for k = 5, 6, 7.
        ([3], 7, 1 - (39690 + 17640 + 5040) / 1023014.1796875),
        ([4], 6, 1 - (3240 + 720) / 227336.484375),  # k = 5, 6 of 6; (5.5)↑6 below
        # 2:1, 1 left: the runner-up (1.5 of 5) ties by taking it; the unseen answer cannot.
        ([2, 1], 1, 1 - 1.5 / 5),
        # 2:1, 2 left: the runner-up takes both (1.5·2.5 / 5·6) or one with the other to an
        # unseen answer (2·1.5·1 / 5·6); the unseen answer takes both (1·2 / 5·6).
        ([2, 1], 2, 1 - (3.75 + 3 + 2) / 30),
        ([2, 2], 0, 0.0),  # a tie at the end is lost
        ([1, 1, 1], 1, 0.0),  # the chances of the rivals are added: a lower bound, kept ≥ 0
    ],
)
def test_the_cannot_lose_rule_at_hand_checked_points(
    counts: list[int], left: int, probability: float
) -> None:
    assert cannot_lose(counts, left) == pytest.approx(probability, abs=1e-12)
    assert leader_chance("cannot_lose", counts, left) == pytest.approx(probability, abs=1e-12)


@pytest.mark.parametrize("rule", ["cannot_lose", "beta"])
@pytest.mark.parametrize(
    ("counts", "left"), [([3], 2), ([4, 1], 2), ([5, 3, 1], 1), ([2, 1, 1], 0), ([51], 49)]
)
def test_a_leader_more_ahead_than_the_samples_left_cannot_lose(
    rule: Literal["cannot_lose", "beta"], counts: list[int], left: int
) -> None:
    assert leader_chance(rule, counts, left) == 1.0


def test_the_cannot_lose_rule_counts_what_is_left() -> None:
    # The same 3:1 is less settled the more samples are left to draw; with 2 left only the
    # runner-up taking both catches up: 1.5·2.5 / (6·7).
    assert cannot_lose([3, 1], 2) == pytest.approx(1 - 3.75 / 42, abs=1e-12)
    assert [round(cannot_lose([3, 1], left), 4) for left in (1, 2, 6, 16, 96)] == [
        1.0,
        0.9107,
        0.8429,
        0.7957,
        0.7599,
    ]
    # At the cap of 100: a level tally is a coin toss (a little less: a tie is lost), a clear
    # one is settled halfway.
    assert round(cannot_lose([25, 25], 50), 4) == 0.4731
    assert round(cannot_lose([28, 22], 50), 4) == 0.8723
    assert round(cannot_lose([30, 20], 50), 4) == 0.9741
    assert round(cannot_lose([2], 98), 4) == 0.8244


@pytest.mark.parametrize(
    ("lead", "second", "probability"),
    [
        (0, 0, 0.5),
        (1, 1, 0.5),
        (3, 3, 0.5),
        (1, 0, 0.75),  # Beta(2, 1): 1 - (1/2)²
        (2, 0, 0.875),
        (3, 0, 0.9375),
        (4, 0, 0.96875),
        (3, 1, 26 / 32),  # P(Binomial(5, 1/2) ≤ 3)
        (5, 1, 120 / 128),
        (7, 1, 502 / 512),
        (2, 5, 37 / 256),  # a trailing "leader" is unlikely to lead
    ],
)
def test_the_beta_rule_at_known_points(lead: int, second: int, probability: float) -> None:
    assert beta(lead, second) == probability
    assert leader_chance("beta", [lead, second], left=100) == probability


def test_the_beta_rule_is_exact_far_out() -> None:
    assert beta(100, 100) == 0.5
    assert beta(60, 40) > 0.97  # a 60/40 split over 100 samples is settled
    assert beta(101, 0) == 1 - 2.0**-102


# --- exact sample counts -------------------------------------------------------------------------


async def test_unanimous_samples_stop_once_the_rule_is_met() -> None:
    model = ScriptedModel(["Paris"] * 10)
    told: list[dict[str, Any]] = []

    result = await run_checked(
        Agent("w", model), ASK, votes=AdaptiveVotes(), on_check=lambda **d: told.append(d)
    )

    # 2 asked together, then 1 at a time; of 10, the leader wins with 83.7 % after 2 agree,
    # 93.9 % after 3, 98.3 % ≥ 95 % after 4
    assert model.calls == 4
    assert result.output == "Paris"
    assert result.calls == 4
    assert result.vote == VoteRecord(samples=4, agreement=1.0, stopped="unanimous")
    assert [(d["check"], d["samples"], d["stopped"], d["agreement"]) for d in told] == [
        ("vote", 4, "unanimous", 1.0)
    ]


async def test_a_settled_majority_stops_with_confidence() -> None:
    model = ScriptedModel(["Paris", "Lyon"] + ["Paris"] * 10)

    result = await run_checked(Agent("w", model), ASK, votes=AdaptiveVotes())

    # 1:1 (12.4 %), 2:1 (59.2 %), 3:1 (84.3 %), 4:1 with 5 left: 95.5 % ≥ 95 %
    assert model.calls == 5
    assert result.output == "Paris"
    assert result.vote == VoteRecord(samples=5, agreement=4 / 5, stopped="confident")


async def test_the_beta_rule_ignores_the_samples_left() -> None:
    model = ScriptedModel(["Paris", "Lyon"] + ["Paris"] * 10)

    beta_votes = AdaptiveVotes(rule="beta", batch=2)
    result = await run_checked(Agent("w", model), ASK, votes=beta_votes)

    # 2 → 1:1 (50 %), 4 → 3:1 (81 %), 6 → 5:1 (93.8 %), 8 → 7:1 (98 %)
    assert model.calls == 8
    assert result.vote == VoteRecord(samples=8, agreement=7 / 8, stopped="confident")


@pytest.mark.parametrize("rule", ["cannot_lose", "beta"])
async def test_a_certain_win_stops_whatever_the_confidence(
    rule: Literal["cannot_lose", "beta"],
) -> None:
    model = ScriptedModel(["Paris"] * 10)
    policy = AdaptiveVotes(max_samples=5, confidence=0.999, rule=rule)

    result = await run_checked(Agent("w", model), ASK, votes=policy)

    # 3 of 5 agree: the 2 left cannot outvote them
    assert model.calls == 3
    assert result.vote == VoteRecord(samples=3, agreement=1.0, stopped="unanimous")


async def test_a_vote_that_stops_only_when_certain_gives_the_full_votes_answer() -> None:
    # Every sequence of 5 answers among 3: at confidence 0.99 the vote of at most 5 stops only
    # where the leader is more ahead than the samples left (3 alike of 3, or 3:1 of 4), and its
    # answer is always the one all 5 samples would elect.
    policy = AdaptiveVotes(max_samples=5, confidence=0.99)
    asked = 0
    for answers in itertools.product("ABC", repeat=5):
        model = ScriptedModel(list(answers))

        result = await run_checked(Agent("w", model), ASK, votes=policy)

        expected = next(n for n in range(2, 6) if n == 5 or _lead(answers[:n]) > 5 - n)
        assert model.calls == expected, answers
        assert result.output == answers[_plurality(list(answers))], answers
        asked += model.calls
    # 3 · 9 sequences start with 3 alike (3 samples), 18 · 3 more with 3:1 after 4 (4 samples),
    # the other 162 take 5: 81 + 216 + 810
    assert asked == 1107


async def test_answers_that_never_settle_stop_at_max_samples() -> None:
    model = FunctionModel(_cycle("Paris", "Lyon"))

    result = await run_checked(Agent("w", model), ASK, votes=AdaptiveVotes(max_samples=6))

    assert model.calls == 6
    assert result.output == "Paris"  # a tie goes to the earliest sample
    assert result.vote == VoteRecord(samples=6, agreement=0.5, stopped="max_samples")


def _lead(answers: tuple[str, ...]) -> int:
    """How many votes the leading answer has over the runner-up."""
    counts = [*sorted(Counter(answers).values(), reverse=True), 0]
    return counts[0] - counts[1]


async def test_the_last_batch_is_cut_to_max_samples() -> None:
    model = FunctionModel(_cycle("Paris", "Lyon"))

    result = await run_checked(Agent("w", model), ASK, votes=AdaptiveVotes(max_samples=5, batch=2))

    assert model.calls == 5  # 2 + 2 + 1
    assert result.vote == VoteRecord(samples=5, agreement=3 / 5, stopped="max_samples")


async def test_no_stop_before_min_samples() -> None:
    model = ScriptedModel(["Paris"] * 10)

    result = await run_checked(Agent("w", model), ASK, votes=AdaptiveVotes(min_samples=6, batch=2))

    assert model.calls == 6  # settled after 4, but 6 are the least asked (all at once)
    assert result.vote == VoteRecord(samples=6, agreement=1.0, stopped="unanimous")


async def test_the_batch_size_and_confidence_set_where_it_stops() -> None:
    model = ScriptedModel(["Paris"] * 10)

    result = await run_checked(
        Agent("w", model), ASK, votes=AdaptiveVotes(batch=3, min_samples=1, confidence=0.9)
    )

    assert model.calls == 3  # one batch of three: 93.9 % ≥ 90 %
    assert result.vote == VoteRecord(samples=3, agreement=1.0, stopped="unanimous")


async def test_structured_answers_tally_whole_and_merge_field_by_field() -> None:
    model = ScriptedModel(
        [
            {"name": "Ada", "year": 1815},
            {"name": "Ada", "year": 1816},
            {"name": "Bob", "year": 1815},
            {"name": "Ada", "year": 1815},
        ]
    )
    worker = Agent("w", model, output_type=Person)

    result = await run_checked(worker, "Who?", votes=AdaptiveVotes(max_samples=4, confidence=0.8))

    # whole answers 1:1:1 with one left cannot reach 80 %; each field agrees 3 to 1
    assert model.calls == 4
    assert result.output == Person(name="Ada", year=1815)
    assert result.vote == VoteRecord(samples=4, agreement=0.5, stopped="max_samples")


async def test_structured_answers_that_agree_whole_stop_early() -> None:
    model = ScriptedModel([{"name": "Ada", "year": 1815}] * 10)

    result = await run_checked(Agent("w", model, output_type=Person), "Who?", votes=AdaptiveVotes())

    assert model.calls == 4
    assert result.output == Person(name="Ada", year=1815)
    assert result.vote == VoteRecord(samples=4, agreement=1.0, stopped="unanimous")


async def test_fixed_votes_keep_asking_all_and_record_them() -> None:
    model = ScriptedModel(["Paris", "Lyon", "Paris"])

    result = await run_checked(Agent("w", model), ASK, votes=3)

    assert model.calls == 3
    assert result.vote == VoteRecord(samples=3, agreement=2 / 3, stopped="max_samples")
    single = await run_checked(Agent("w", ScriptedModel(["Paris"])), ASK)
    assert single.vote is None


async def test_a_failing_sample_fails_the_vote_with_its_own_error() -> None:
    def answer(request: ModelRequest) -> str:
        if request.sample == 3:
            raise ConfigError("sample 4 broke")
        return "Paris" if request.sample in (None, 2) else "Lyon"

    with pytest.raises(ConfigError, match="sample 4 broke"):
        await run_checked(Agent("w", FunctionModel(answer)), ASK, votes=AdaptiveVotes())


def test_an_agent_takes_adaptive_votes_and_refuses_anything_else() -> None:
    policy = AdaptiveVotes(max_samples=8)
    agent = Agent("w", ScriptedModel([]), votes=policy)
    assert agent.votes is policy
    assert repr(agent) == (
        "Agent(name='w', model='scripted', votes=AdaptiveVotes(kind='adaptive_votes', "
        "max_samples=8, min_samples=2, batch=1, confidence=0.95, rule='cannot_lose'))"
    )
    for bad in ("5", 0, True, Person(name="x", year=1)):
        with pytest.raises(ConfigError, match=r"votes must be a positive int, got .*AdaptiveVotes"):
            Agent("w", ScriptedModel([]), votes=bad)  # type: ignore[arg-type]


def test_a_workflow_step_names_the_rule_and_a_wrong_one_is_refused() -> None:
    head = "name: w\nagents:\n  a: {model: openai/gpt-4o-mini}\nsteps:\n"
    step = "  - {id: s, agent: a, prompt: P., votes: {max_samples: 5, rule: %s}}\n"

    [beta_step] = load_workflow_text(head + step % "beta").spec.steps or []

    assert isinstance(beta_step, AgentStep)
    assert not isinstance(beta_step.votes, int | None)
    assert beta_step.votes.to_votes() == AdaptiveVotes(max_samples=5, rule="beta")
    [default_step] = load_workflow_text(head + step % "cannot_lose").spec.steps or []
    assert isinstance(default_step, AgentStep)
    assert default_step.votes == AdaptiveVotesSpec(max_samples=5)
    with pytest.raises(WorkflowError) as caught:
        load_workflow_text(head + step % "majority", "w.yaml")
    [problem] = caught.value.problems
    assert (problem.line, "rule" in problem.message) == (5, True)
    assert "'cannot_lose' or 'beta'" in problem.message


# --- in a run: the record, the events ------------------------------------------------------------


async def test_an_agents_adaptive_votes_in_a_run_are_recorded_and_told() -> None:
    model = FunctionModel(lambda request: "Paris", output_price=1000.0)
    worker = Agent("w", model, votes=AdaptiveVotes(max_samples=10))
    g = TaskGraph()
    g.add("capital", agent=worker, prompt=ASK)

    result, checked = await _run(g)

    task = result.tasks["capital"]
    assert task.status == "succeeded"
    assert task.output == "Paris"
    assert task.vote == VoteRecord(samples=4, agreement=1.0, stopped="unanimous")
    assert task.usage.calls == model.calls == 4
    [vote] = checked
    assert (vote.check, vote.samples, vote.unanimous, vote.chosen) == ("vote", 4, True, 1)
    assert (vote.stopped, vote.agreement) == ("unanimous", 1.0)
    assert vote.cost_usd == pytest.approx(task.usage.cost_usd)
    assert task.usage.cost_usd > 0
    assert result.task("capital").model_dump()["vote"] == {
        "samples": 4,
        "agreement": 1.0,
        "stopped": "unanimous",
    }


async def test_adaptive_votes_then_a_judge_only_when_samples_disagree() -> None:
    worker = Agent("w", FunctionModel(_cycle("Paris", "Lyon")))
    judge = ScriptedModel([{"index": 1, "reason": "Paris is the capital"}])
    g = TaskGraph()
    g.add(
        "capital",
        agent=worker,
        prompt=ASK,
        verify=Agent("j", judge),
        votes=AdaptiveVotes(max_samples=4),
    )

    result, checked = await _run(g)

    assert result.output == "Paris"
    assert judge.calls == 1
    assert [(c.check, c.samples, c.stopped) for c in checked] == [
        ("vote", 4, "max_samples"),
        ("pick", 4, None),
    ]
    assert result.tasks["capital"].vote == VoteRecord(4, 0.5, "max_samples")


# --- the budget cap on samples -------------------------------------------------------------------

_PER_SAMPLE = 0.01  # 10 output tokens at $1,000 per million


def _costly(spent: list[float], answer: Callable[[ModelRequest], str]) -> FunctionModel:
    """A model whose every answer costs exactly what its call reserves (10 output tokens, no
    input price), each noted in `spent`: a spend counter the ledger does not keep."""

    def respond(request: ModelRequest) -> ModelResponse:
        assert request.max_output_tokens == 10
        spent.append(_PER_SAMPLE)
        usage = Usage(output_tokens=10, cost_usd=_PER_SAMPLE, calls=1)
        return ModelResponse(text=answer(request), usage=usage)

    return FunctionModel(respond, output_price=1000.0, name="priced")


async def test_a_call_budget_for_three_samples_gets_three() -> None:
    model = FunctionModel(lambda request: "Paris")
    g = TaskGraph()
    g.add("capital", agent=Agent("w", model), prompt=ASK, votes=AdaptiveVotes())

    result, checked = await _run(g, budget=Budget(calls=3))

    task = result.tasks["capital"]
    assert task.status == "succeeded"
    assert model.calls == 3  # 2, then 1, then 1 more; a 4th would settle it but cannot be paid
    assert task.vote == VoteRecord(samples=3, agreement=1.0, stopped="budget")
    assert result.usage.refused == 0  # no sample was even tried beyond the budget
    assert [(c.stopped, c.samples) for c in checked] == [("budget", 3)]


async def test_a_usd_budget_for_k_samples_gets_k_and_never_more() -> None:
    spent: list[float] = []
    worker = Agent("w", _costly(spent, lambda r: "Paris"), max_output_tokens=10)
    g = TaskGraph()
    g.add("capital", agent=worker, prompt=ASK, votes=AdaptiveVotes())

    result, _ = await _run(g, budget=Budget(usd=0.035))  # room for 3 samples, not 4

    assert len(spent) == 3
    assert sum(spent) == pytest.approx(0.03)
    assert result.usage.cost_usd == pytest.approx(sum(spent))
    assert result.tasks["capital"].vote == VoteRecord(3, 1.0, "budget")
    assert result.usage.refused == 0


async def test_a_budget_for_no_sample_refuses_the_first_as_any_call() -> None:
    spent: list[float] = []
    worker = Agent("w", _costly(spent, lambda r: "Paris"), max_output_tokens=10)
    g = TaskGraph()
    g.add("capital", agent=worker, prompt=ASK, votes=AdaptiveVotes())

    result, _ = await _run(g, budget=Budget(usd=0.005))

    task = result.tasks["capital"]
    assert task.status == "failed"
    assert spent == []
    assert task.error is not None
    assert "budget" in task.error
    assert result.usage.refused == 1


@pytest.mark.parametrize("budget", [Budget(calls=7), Budget(usd=0.075)])
async def test_tasks_voting_at_once_share_the_budget_exactly(budget: Budget) -> None:
    spent: list[float] = []
    worker = Agent("w", _costly(spent, _cycle("Paris", "Lyon")), max_output_tokens=10)
    g = TaskGraph()
    for name in ("a", "b", "c"):
        g.add(name, agent=worker, prompt=f"{ASK} ({name})", votes=AdaptiveVotes())

    result, _ = await _run(g, budget=budget)

    assert len(spent) == 7  # every sample the budget could pay for, and not one more
    assert result.usage.calls == 7
    assert result.usage.cost_usd == pytest.approx(0.07)
    votes = [result.tasks[name].vote for name in ("a", "b", "c")]
    assert all(vote is not None and vote.stopped == "budget" for vote in votes)
    assert sum(vote.samples for vote in votes if vote is not None) == 7
    assert result.status == "succeeded"


async def test_outside_a_run_there_is_no_budget_to_cap_samples() -> None:
    model = FunctionModel(_cycle("Paris", "Lyon"))
    result = await run_checked(Agent("w", model), ASK, votes=AdaptiveVotes(max_samples=10))
    assert model.calls == 10
    assert result.vote is not None
    assert result.vote.stopped == "max_samples"


async def test_fixed_votes_over_budget_are_still_refused() -> None:
    model = FunctionModel(lambda request: "Paris")
    g = TaskGraph()
    g.add("capital", agent=Agent("w", model), prompt=ASK, votes=3)

    result, _ = await _run(g, budget=Budget(calls=2))

    assert model.calls == 2
    assert result.tasks["capital"].status == "failed"
    assert result.usage.refused == 1


def _refusing(refused: set[int | None]) -> Callable[..., Any]:
    """A caller that refuses the draws in `refused` as a budget would (never sent), as when
    another task took the budget between the room check and the call."""

    async def caller(agent: Agent[Any], model: Any, request: ModelRequest) -> ModelResponse:
        if request.sample in refused:
            raise BudgetExceeded(
                "budget of run would be exceeded",
                scope="run",
                unit="calls",
                limit=3,
                spent=3,
                requested=1,
            )
        response: ModelResponse = await model.request(request)
        return response

    return caller


async def test_a_sample_refused_after_others_answered_stops_the_vote() -> None:
    model = FunctionModel(_cycle("Paris", "Lyon", "Paris"))

    result = await run_checked(Agent("w", model), ASK, caller=_refusing({3}), votes=AdaptiveVotes())

    assert model.calls == 3  # samples 1 and 2, then 3 of the second batch; 4 refused
    assert result.output == "Paris"
    assert result.vote == VoteRecord(samples=3, agreement=2 / 3, stopped="budget")


async def test_a_refused_first_sample_is_raised() -> None:
    model = FunctionModel(lambda request: "Paris")
    with pytest.raises(BudgetExceeded):
        await run_checked(
            Agent("w", model), ASK, caller=_refusing({None, 1}), votes=AdaptiveVotes()
        )
    assert model.calls == 0


# --- distinct samples under the call cache -------------------------------------------------------


async def test_samples_are_separate_draws_under_the_call_cache(tmp_path: Path) -> None:
    drawn: list[int | None] = []  # every request that reached the model

    def answer(request: ModelRequest) -> str:
        drawn.append(request.sample)
        return f"answer {len(drawn)}"

    model = FunctionModel(answer, name="openai/gpt-4o-mini")

    def graph() -> TaskGraph:
        g = TaskGraph()
        g.add("q", agent=Agent("w", model, temperature=0.8), prompt=ASK, votes=5)
        return g

    url = f"sqlite:///{tmp_path / 'cache.db'}"
    first, checked = await _run(graph(), memory=url, cache=True)

    assert sorted(drawn, key=lambda s: s or 0) == [None, 1, 2, 3, 4]  # five requests, not one
    assert first.usage.cache_hits == 0
    assert first.tasks["q"].vote == VoteRecord(5, 0.2, "max_samples")  # five different answers
    [vote] = checked
    assert vote.unanimous is False

    second, _ = await _run(graph(), memory=url, cache=True)

    assert len(drawn) == 5  # nothing new asked: each draw answered from its own entry
    assert second.usage.cache_hits == 5
    assert second.output == first.output
    assert second.tasks["q"].vote == VoteRecord(5, 0.2, "max_samples")


async def test_adaptive_samples_are_separate_draws_under_the_call_cache(tmp_path: Path) -> None:
    drawn: list[int | None] = []

    def answer(request: ModelRequest) -> str:
        drawn.append(request.sample)
        return "Paris"

    g = TaskGraph()
    g.add("q", agent=Agent("w", FunctionModel(answer)), prompt=ASK, votes=AdaptiveVotes())

    result, _ = await _run(g, memory=f"sqlite:///{tmp_path / 'c.db'}", cache=True)

    assert len(drawn) == 4
    assert set(drawn) == {None, 1, 2, 3}
    assert result.tasks["q"].vote == VoteRecord(4, 1.0, "unanimous")


# --- the stored run and its report ---------------------------------------------------------------


async def test_a_stored_run_keeps_the_vote_and_its_report_shows_an_early_stop(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    worker = Agent("w", FunctionModel(lambda request: "Lyon" if request.sample == 2 else "Paris"))
    g = TaskGraph()
    first = g.add("capital", agent=worker, prompt=ASK, votes=AdaptiveVotes())
    g.add("tight", agent=worker, prompt="Again.", deps=[first], votes=AdaptiveVotes())

    result, _ = await _run(g, memory=url, budget=Budget(calls=9))  # 5, then 4 left

    assert result.tasks["capital"].vote == VoteRecord(5, 4 / 5, "confident")
    assert result.tasks["tight"].vote == VoteRecord(4, 3 / 4, "budget")
    assert result.usage.refused == 0  # the room was asked through the task's journal too
    with Store.open(url) as store:
        events = [e.data for e in store.get_events(result.run_id) if e.kind == "task_checked"]
        page = stored_report_html(store, result.run_id)
    assert sorted((e["task_id"], e["stopped"], e["agreement"], e["samples"]) for e in events) == [
        ("capital", "confident", 4 / 5, 5),
        ("tight", "budget", 3 / 4, 4),
    ]
    items = re.findall(r'<li data-check="vote">.*?</li>', page)
    assert sorted(items) == [
        '<li data-check="vote">attempt 1: 4 samples voted: split; answer 1 won (stopped: the '
        "budget left could not pay for another sample; 75% agreed)</li>",
        '<li data-check="vote">attempt 1: 5 samples voted: split; answer 1 won (stopped early: '
        "the leader could no longer lose; 80% agreed)</li>",
    ]


async def test_the_sample_number_never_reaches_the_provider() -> None:
    hello: list[Message] = [{"role": "user", "content": "Hello?"}]
    with FakeOpenAIServer() as server:
        model = LiteLLMModel("openai/gpt-4o-mini", api_base=server.base_url, api_key="sk-test")
        await model.request(ModelRequest(hello))
        await model.request(ModelRequest(hello, sample=3))

    assert server.bodies == [{"model": "gpt-4o-mini", "messages": hello}] * 2
