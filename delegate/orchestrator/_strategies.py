"""Strategies carried out: best-of-n, mixture-of-agents and self-refine on a task's calls.

`run_checked(..., strategy=..., agents=...)` hands a task with a strategy (the settings in
`delegate.orchestrator.strategies`) to `run_strategy`. The workers a strategy names are looked up
in `agents` before any call is made, so a typo costs nothing:

- `BestOfN`: `n` answers by the task's worker, each scored as soon as it arrives (all
  concurrently; the first failure cancels the rest), by a judge answering a `Score` (0–10 and a
  reason) or by a scoring function called with the answer's output. The highest score wins; ties
  go to the earliest answer.
- `MixtureOfAgents`: every proposer answers the task concurrently; the aggregator (the task's
  worker unless named) then answers `AGGREGATE_PROMPT`, holding the task and the numbered
  proposals, as the task's output type. Its answer is the result.
- `SelfRefine`: the worker answers; then, at most `rounds` times, the critic returns a `Verdict`
  on the answer (`JUDGE_PROMPT`): a pass ends the rounds, a rejection has the worker revise
  (`RETRY_PROMPT`, with the critique). The last revision is kept without another critique, so a
  task makes at most `SelfRefine.max_calls()` calls.

Every call goes through the task's `_Job` (the run's gate: budgets, usage by agent, tracing), so
the returned `AgentResult` sums the usage and calls of them all; its `agent` and `model` are those
of the answer kept. Each decision is told to the task's `on_check` listener (a `TaskChecked`
event in a run): "score", "best", "propose", "aggregate" and "critique".

With `verify=`, the answer a strategy returns is judged as any answer is (a rejection is re-asked,
then escalated to the worker's fallback), except when the strategy already had that judge decide
on it: best-of-n scored by the `verify` judge, or self-refine whose critique by the `verify` judge
passed the answer it returns. A strategy and `votes` > 1 are one or the other: both is refused.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import anyio.to_thread
from pydantic import BaseModel, Field

from delegate import _secrets
from delegate.agents.agent import judge_problem, with_output_type
from delegate.errors import ConfigError, did_you_mean
from delegate.orchestrator._specs import import_object
from delegate.orchestrator.checks import (
    JUDGE_PROMPT,
    RETRY_PROMPT,
    Verdict,
    _Job,
    _verified,
    concurrently,
)
from delegate.orchestrator.graph import format_output
from delegate.orchestrator.strategies import BestOfN, MixtureOfAgents, SelfRefine

if TYPE_CHECKING:
    from delegate.agents.agent import Agent, AgentResult
    from delegate.orchestrator.strategies import Strategy

__all__ = ["AGGREGATE_PROMPT", "SCORE_PROMPT", "Score", "run_strategy"]

SCORE_PROMPT = (
    "Score the answer below to the task from 0 to 10: 10 when it is correct, complete and could "
    "not be better, 0 when it is useless or wrong. Reply with the score and a short reason.\n\n"
    "## Task\n{task}\n\n## Answer\n{answer}"
)
"""What a best-of-n judge is asked for each answer it scores."""

AGGREGATE_PROMPT = (
    "{task}\n\n## Proposed answers\nThe {count} answers below were proposed for the task above; "
    "some may be wrong or incomplete. Write the best answer to the task: keep what is correct, "
    "fix what is wrong, and answer the task itself rather than commenting on the proposals.\n\n"
    "{proposals}"
)
"""What a mixture-of-agents aggregator is asked, with the numbered proposals."""

_ERROR_IN_MESSAGE = 300  # characters of a scoring function's exception quoted in ours


class Score(BaseModel):
    """A best-of-n judge's score for one answer.

    Attributes:
        score: from 0 (useless or wrong) to 10 (correct, complete, could not be better).
        reason: why.
    """

    score: float = Field(ge=0, le=10, allow_inf_nan=False)
    reason: str


def run_strategy(
    job: _Job, strategy: Strategy, agents: Mapping[str, Agent[Any]], votes: object = 1
) -> Coroutine[Any, Any, AgentResult[Any]]:
    """Carry out `strategy` for `job`'s task: the names it gives are resolved first.

    Args:
        job: the task's checked answer in the making (its worker, prompt, gate and judge).
        strategy: a `BestOfN`, `MixtureOfAgents` or `SelfRefine`.
        agents: the run's workers by name, where the strategy's names are looked up.
        votes: the task's votes; anything but 1 is refused (a strategy or votes, not both).

    Returns:
        An awaitable of the kept `AgentResult`, with the usage and calls of every call made.

    Raises:
        ConfigError: votes besides the strategy, a name that is not in `agents`, a judge or
            critic with an `output_type`, a scoring function that cannot be imported, a
            best-of-n with nothing to score it, or an aggregator whose output type does not
            match the task's.
    """
    kind = getattr(strategy, "kind", None)
    prefix = f"Agent {job.agent.name!r}: strategy {kind!r}"
    if votes != 1:
        raise ConfigError(
            f"{prefix} and votes={votes!r} both ask for several answers; use votes or a "
            "strategy, not both"
        )
    if isinstance(strategy, BestOfN):
        return _best_of_n(job, strategy, _scorer(job, strategy, agents, prefix))
    if isinstance(strategy, MixtureOfAgents):
        proposers = [_named(name, agents, "proposer", prefix) for name in strategy.proposers]
        aggregator = _aggregator(job, strategy, agents, prefix)
        return _mixture(job, proposers, aggregator)
    if isinstance(strategy, SelfRefine):
        return _self_refine(job, strategy, _critic(job, strategy, agents, prefix))
    raise ConfigError(
        f"Agent {job.agent.name!r}: strategy must be a BestOfN, MixtureOfAgents or SelfRefine, "
        f"got {type(strategy).__name__}"
    )


# --- names -------------------------------------------------------------------------------------


def _named(name: str, agents: Mapping[str, Agent[Any]], role: str, prefix: str) -> Agent[Any]:
    found = agents.get(name)
    if found is None:
        raise ConfigError(
            f"{prefix} names {role} {name!r}, which is not one of the run's workers"
            f"{did_you_mean(name, agents)}; add it to Orchestrator(workers=[...]) or fix the name"
        )
    return found


def _judging(name: str, agents: Mapping[str, Agent[Any]], role: str, prefix: str) -> Agent[Any]:
    """A named judge or critic: a worker without an `output_type` of its own."""
    agent = _named(name, agents, role, prefix)
    problem = judge_problem(agent)
    if problem is not None:
        raise ConfigError(f"{prefix}: {problem}")
    return agent


def _is_verify(job: _Job, agent: Agent[Any] | None) -> bool:
    """Whether `agent` is the task's `verify` judge (the same worker, by name)."""
    return agent is not None and job.verify is not None and agent.name == job.verify.name


# --- judges ------------------------------------------------------------------------------------


async def _judged(job: _Job, judge: Agent[Any], output_type: type[BaseModel], prompt: str) -> Any:
    """`judge`'s answer to `prompt` as `output_type`, through the task's gate and counted."""
    typed = with_output_type(judge, output_type)
    return job.count(await typed.run(prompt, caller=job.caller)).output


# --- best-of-n ---------------------------------------------------------------------------------

ScoreFunction = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class _Scorer:
    """What scores a best-of-n answer: a judge agent, or a function (`path` names it)."""

    judge: Agent[Any] | None = None
    function: ScoreFunction | None = None
    path: str = ""

    @property
    def name(self) -> str:
        return self.judge.name if self.judge is not None else self.path


def _scorer(job: _Job, strategy: BestOfN, agents: Mapping[str, Agent[Any]], prefix: str) -> _Scorer:
    if strategy.score is not None:
        return _Scorer(function=_load_score(strategy.score, prefix), path=strategy.score)
    if strategy.judge is not None:
        return _Scorer(judge=_judging(strategy.judge, agents, "judge", prefix))
    if job.verify is not None:
        return _Scorer(judge=job.verify)
    raise ConfigError(
        f"{prefix} has nothing to score its answers: give it judge='<a worker's name>' (a judge "
        "agent that scores each answer 0–10), score='package.module:function' (called with "
        "each answer's output, returning a number), or give the task a verify= judge"
    )


def _load_score(path: str, prefix: str) -> ScoreFunction:
    """The function `path` ("package.module:function") names, by `load_function`'s rules."""
    module_name, colon, qualname = path.partition(":")
    if not colon or not module_name or not qualname:
        raise ConfigError(
            f"{prefix}: score {_shown(path)} is not an import path; write it as "
            "'package.module:function'"
        )
    try:
        target = import_object(path)
    except ImportError as exc:
        raise ConfigError(
            f"{prefix}: its scoring function {_shown(path)} cannot be imported ({exc}); make it "
            "a module-level function the run's process can import"
        ) from None
    if not callable(target):
        raise ConfigError(f"{prefix}: score {_shown(path)} is not callable")
    function: ScoreFunction = target
    return function


def _shown(value: str) -> str:
    text = repr(value)
    return text if len(text) <= 300 else f"{text[:300]}…"


async def _call_score(scorer: _Scorer, output: Any, number: int) -> float:
    """The scoring function's number for answer `number`; anything else is a ConfigError."""
    function = scorer.function
    if function is None:  # only called for a function scorer
        raise ConfigError(f"scorer {scorer.name!r} is not a function")
    try:
        if inspect.iscoroutinefunction(function):
            value = await function(output)
        else:
            # abandon_on_cancel: a cancelled task ends at once; the thread finishes on its own.
            value = await anyio.to_thread.run_sync(function, output, abandon_on_cancel=True)
            if inspect.isawaitable(value):
                value = await value
    except Exception as exc:
        error = _secrets.redact(str(exc), lookalikes=True)[:_ERROR_IN_MESSAGE]
        raise ConfigError(
            f"scoring function {scorer.path!r} raised {type(exc).__name__} on answer {number}: "
            f"{error}; make it return a number for any answer"
        ) from exc
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(
            f"scoring function {scorer.path!r} returned {type(value).__name__} for answer "
            f"{number}; make it return a number (higher is better)"
        )
    score = float(value)
    if not math.isfinite(score):
        raise ConfigError(
            f"scoring function {scorer.path!r} returned {score} for answer {number}; make it "
            "return a finite number (higher is better)"
        )
    return score


async def _best_of_n(job: _Job, strategy: BestOfN, scorer: _Scorer) -> AgentResult[Any]:
    n = strategy.n
    answers: dict[int, AgentResult[Any]] = {}

    async def answer_and_score(index: int) -> float:
        # Each draw is a request of its own (`sample`), so the call cache keeps n answers.
        answer = answers[index] = await job.ask(job.agent, job.prompt, sample=index)
        if scorer.judge is None:
            score = await _call_score(scorer, answer.output, index + 1)
            reason = f"score {score:g}"
        else:
            prompt = SCORE_PROMPT.format(task=job.prompt, answer=format_output(answer.output))
            verdict: Score = await _judged(job, scorer.judge, Score, prompt)
            score, reason = verdict.score, f"score {verdict.score:g}: {verdict.reason}"
        job.note("score", n, answer.agent, judge=scorer.name, feedback=reason, chosen=index + 1)
        return score

    scores = await concurrently(n, answer_and_score)
    best = max(range(n), key=scores.__getitem__)  # (max keeps the earliest of equal scores)
    winner = answers[best]
    listed = ", ".join(f"{score:g}" for score in scores)
    text = f"scores {listed}: answer {best + 1} kept (ties go to the earliest)"
    job.note("best", n, winner.agent, judge=scorer.name, feedback=text, chosen=best + 1)
    if job.verify is None or _is_verify(job, scorer.judge):
        return job.final(winner)
    return job.final(await _verified(job, winner))


# --- mixture-of-agents -------------------------------------------------------------------------


def _aggregator(
    job: _Job, strategy: MixtureOfAgents, agents: Mapping[str, Agent[Any]], prefix: str
) -> Agent[Any]:
    """The aggregator, answering as the task's output type."""
    if strategy.aggregator is None:
        return job.agent
    aggregator = _named(strategy.aggregator, agents, "aggregator", prefix)
    wanted, own = job.agent.output_type, aggregator.output_type
    if own is wanted:
        return aggregator
    if wanted is None and own is not None:
        raise ConfigError(
            f"{prefix}: aggregator {aggregator.name!r} answers with output_type "
            f"{own.__name__}, but the task's worker answers text; name an aggregator without "
            "an output_type"
        )
    return aggregator if wanted is None else with_output_type(aggregator, wanted)


async def _mixture(
    job: _Job, proposers: list[Agent[Any]], aggregator: Agent[Any]
) -> AgentResult[Any]:
    count = len(proposers)

    async def propose(index: int) -> AgentResult[Any]:
        # (`sample`: a worker named twice proposes twice, even through the call cache)
        proposal = await job.ask(proposers[index], job.prompt, sample=index)
        text = format_output(proposal.output)
        job.note("propose", count, proposal.agent, judge=None, feedback=text, chosen=index + 1)
        return proposal

    proposals = await concurrently(count, propose)
    listed = "\n\n".join(
        f"## Proposal {number}\n{format_output(proposal.output)}"
        for number, proposal in enumerate(proposals, 1)
    )
    prompt = AGGREGATE_PROMPT.format(task=job.prompt, count=count, proposals=listed)
    answer = await job.ask(aggregator, prompt)
    job.note("aggregate", count, answer.agent, judge=None)
    if job.verify is None:
        return job.final(answer)
    return job.final(await _verified(job, answer))


# --- self-refine -------------------------------------------------------------------------------


def _critic(
    job: _Job, strategy: SelfRefine, agents: Mapping[str, Agent[Any]], prefix: str
) -> Agent[Any]:
    if strategy.critic is not None:
        return _judging(strategy.critic, agents, "critic", prefix)
    return job.verify if job.verify is not None else job.agent


async def _self_refine(job: _Job, strategy: SelfRefine, critic: Agent[Any]) -> AgentResult[Any]:
    rounds = strategy.rounds
    answer = await job.ask(job.agent, job.prompt)
    passed = False
    for round_number in range(1, rounds + 1):
        shown = format_output(answer.output)
        prompt = JUDGE_PROMPT.format(task=job.prompt, answer=shown)
        verdict: Verdict = await _judged(job, critic, Verdict, prompt)
        passed = verdict.passed
        job.note(
            "critique",
            rounds,
            answer.agent,
            judge=critic.name,
            passed=passed,
            feedback=verdict.feedback,
            chosen=round_number,
        )
        if passed:
            break
        retry = RETRY_PROMPT.format(task=job.prompt, answer=shown, feedback=verdict.feedback)
        answer = await job.ask(job.agent, retry)
    if job.verify is None or (passed and _is_verify(job, critic)):
        return job.final(answer)
    return job.final(await _verified(job, answer))
