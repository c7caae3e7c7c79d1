"""Verification and votes: a judge checks a worker's answer, or several answers vote.

`run_checked(agent, prompt, ...)` is what the scheduler calls for every model task. Without a judge
and with one vote it is exactly `agent.run(...)`, at no extra cost. Otherwise:

- `votes=N`: N answers are sampled concurrently. Structured answers vote per top-level field
  (values compared as canonical JSON), and the merged object must validate as the output type
  (else the most common whole answer wins: the first sample when all differ); text answers vote
  by their normalized text (stripped, case-folded, whitespace collapsed). Ties go to the earliest
  sample. Each sample's requests carry its number (`ModelRequest.sample`), so that the call cache
  keeps one answer per draw instead of answering every sample with the first.
- `votes=AdaptiveVotes(...)`: the first `min_samples` samples are asked together, then `batch`
  at a time, and after each round the stopping rule (`delegate.orchestrator._vote_rules`) is
  applied to the counts of the whole answers (see `AdaptiveVotes`), not before `min_samples` and
  never beyond `max_samples`. Before each round the caller (the run's `CallGate`) is asked how
  many more samples the budgets fit at their worst case (`room`): the round shrinks to that,
  and at none the vote stops; a sample refused meanwhile (another task
  took the budget) stops it too, with the answers that came. The final answer is voted as above.
  The result's `vote` (a `VoteRecord`) says how many samples were asked, how much they agreed and
  why sampling stopped; a fixed `votes=N` has one as well.
- `verify=judge`: the judge reads the task's prompt and the answer and returns a `Verdict`. A
  rejected answer is asked again with the judge's feedback and the answer in the prompt: effort
  first, then tier. A reasoning worker (the task's or the agent's `reasoning_effort` set) is
  re-asked one effort higher each time, up to "high"; any other worker once, as it was. Then the
  worker's `fallback` is asked the same way; when that is rejected too (or there is no fallback)
  the task fails with `VerificationFailed`, which says what was tried and quotes the feedback.
- both: unanimous samples are taken as they are, with no judge call (agreement is the confidence,
  so only uncertain answers pay for a judge). When they disagree the judge picks among text
  answers (a `Choice`), or judges the merged structured answer as above.

Every call — samples, judge, re-asks, fallback — goes through the same `caller`, so during a run
budgets hold and usage is counted under the agent that made the call (the judge's under the
judge's name). The returned `AgentResult` adds up the usage and calls of them all; its `agent` and
`model` are those of the answer that won.

With an `on_check` listener, each decision is told as it is made: the tally of the votes, the
judge's pick, each verdict (the scheduler publishes them as `TaskChecked` events).
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from types import EllipsisType
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

import anyio
import anyio.lowlevel
import pydantic
from pydantic import BaseModel

from delegate import _secrets
from delegate._log import get_logger
from delegate.agents.agent import VoteRecord, VoteStop, judge_problem, with_output_type
from delegate.agents.models import ModelRequest, ModelResponse, ReasoningEffort, Usage
from delegate.errors import BudgetExceeded, ConfigError, VerificationFailed
from delegate.orchestrator._vote_rules import leader_chance
from delegate.orchestrator.graph import format_output
from delegate.orchestrator.strategies import AdaptiveVotes

if TYPE_CHECKING:
    from delegate.agents.agent import Agent, AgentResult, ModelCaller
    from delegate.agents.models import Model
    from delegate.agents.tools import Tool
    from delegate.orchestrator.strategies import Strategy

__all__ = [
    "JUDGE_PROMPT",
    "PICK_PROMPT",
    "RETRY_PROMPT",
    "CheckKind",
    "CheckListener",
    "Choice",
    "Verdict",
    "concurrently",
    "run_checked",
]

log = get_logger("delegate.checks")

T = TypeVar("T")

JUDGE_PROMPT = (
    "Check whether the answer below does the task. If it is correct and complete, reply with "
    "passed=true. Otherwise reply with passed=false and feedback that says what is wrong and how "
    "to fix it.\n\n## Task\n{task}\n\n## Answer\n{answer}"
)
"""What the judge is asked for each answer it checks."""

RETRY_PROMPT = (
    "{task}\n\n## A previous answer\n{answer}\n\n## A reviewer rejected it\n{feedback}\n\n"
    "Answer the task again, fixing what the reviewer pointed out."
)
"""What the worker (then its fallback) is asked after the judge rejected an answer."""

PICK_PROMPT = (
    "The answers below to the task disagree. Pick the one that does the task best: reply with its "
    "number as index (1 to {count}) and the reason.\n\n## Task\n{task}\n\n{answers}"
)
"""What the judge is asked when sampled text answers disagree."""

_FEEDBACK_IN_MESSAGE = 1000  # characters of feedback quoted in a VerificationFailed message
_FEEDBACK_IN_NOTE = 1000  # characters of feedback (or a pick's reason) told to `on_check`


class Verdict(BaseModel):
    """A judge's decision on one answer: what a `verify=` agent answers with.

    Attributes:
        passed: whether the answer does the task.
        feedback: what is wrong and how to fix it (anything, or nothing, when it passed).
    """

    passed: bool
    feedback: str


class Choice(BaseModel):
    """A judge's pick among sampled text answers that disagree.

    Attributes:
        index: the number of the best answer, as numbered in the prompt (from 1).
        reason: why it is the best.
    """

    index: int
    reason: str


CheckKind = Literal["vote", "pick", "judge", "score", "best", "propose", "aggregate", "critique"]
"""What a decision on an answer was: a vote's tally, the judge's pick or verdict, or a
strategy's step (see `TaskChecked`)."""


class CheckListener(Protocol):
    """Told of each decision on a checked answer, as `run_checked` makes it.

    `check` is "vote" (the tally of `samples` answers: `unanimous`, and the number of the sample
    that won as `chosen`, from 1), "pick" (the judge's choice `chosen` among disagreeing samples,
    its reason as `feedback`) or "judge" (a verdict: `passed`, and `feedback`). `agent` is who
    gave the answer, `judge` the judge's name. `feedback` is redacted and cut to 1,000
    characters. A "vote" also says why sampling `stopped` and the `agreement` (see `VoteRecord`);
    a "judge" verdict the reasoning `effort` the judged answer was asked at. `cost_usd` is what
    the task's calls cost since the previous decision (the samples of a vote, the answer judged
    and the verdict). The scheduler's listener publishes each as a `TaskChecked` event. A task
    with a strategy also tells "score", "best", "propose", "aggregate" and "critique" (see
    `TaskChecked`).
    """

    def __call__(
        self,
        *,
        check: CheckKind,
        samples: int,
        agent: str | None,
        unanimous: bool | None = None,
        passed: bool | None = None,
        feedback: str = "",
        chosen: int | None = None,
        judge: str | None = None,
        stopped: VoteStop | None = None,
        agreement: float | None = None,
        effort: ReasoningEffort | None = None,
        cost_usd: float | None = None,
    ) -> None: ...


def run_checked(
    agent: Agent[Any],
    prompt: str,
    *,
    caller: ModelCaller | None = None,
    tools: Sequence[Tool] = (),
    verify: Agent[Any] | None = None,
    votes: int | AdaptiveVotes = 1,
    max_output_tokens: int | None = None,
    reasoning_effort: ReasoningEffort | None = None,
    on_check: CheckListener | None = None,
    strategy: Strategy | None = None,
    agents: Mapping[str, Agent[Any]] | None = None,
) -> Coroutine[Any, Any, AgentResult[Any]]:
    """Answer `prompt` with `agent`, verified by a judge and/or by a majority of votes.

    With `verify=None` and `votes=1` this returns `agent.run(...)` itself: the common path pays for
    nothing it does not use.

    Args:
        agent: the worker.
        prompt: the task's prompt, as the worker gets it.
        caller: sends every model call (the run's `CallGate`); default: straight to the model.
        tools: extra tools for the worker's runs (not the judge's).
        verify: the judge, an agent without `output_type`; None for no judge.
        votes: how many answers to sample concurrently (≥ 1), or an `AdaptiveVotes`: samples
            asked a batch at a time until the majority is settled (or the budget left cannot
            pay for another sample).
        max_output_tokens: replaces the worker's (and its fallback's) cap; None keeps theirs.
        reasoning_effort: replaces the worker's (and its fallback's) effort; None keeps theirs.
        on_check: told of each vote tally, pick and verdict (unused without votes or a judge).
        strategy: a `BestOfN`, `MixtureOfAgents` or `SelfRefine` to answer with instead of
            one call (see `delegate.orchestrator._strategies`); not with `votes` > 1. With
            `verify`, its answer is judged as usual unless the strategy already had that judge
            decide on it (best-of-n scored by it, self-refine's critique by it passed).
        agents: the run's workers by name: where a strategy's judge, proposers, aggregator
            and critic are looked up (before any call is made).

    Returns:
        An awaitable of the winning `AgentResult`, with the usage and calls of every call made.

    Raises:
        VerificationFailed: the judge rejected the first answer, the re-ask and the fallback's.
        ConfigError: `votes` is not a positive int or an `AdaptiveVotes`, or `verify` cannot
            judge.
        ModelError, BudgetExceeded: as `Agent.run`; a sample that fails fails the whole task
            (the other samples are cancelled).
    """
    if verify is None and votes == 1 and strategy is None:
        return agent.run(
            prompt,
            caller=caller,
            tools=tools,
            max_output_tokens=max_output_tokens,
            reasoning_effort=reasoning_effort,
        )
    if not isinstance(votes, AdaptiveVotes) and (
        isinstance(votes, bool) or not isinstance(votes, int) or votes < 1
    ):
        raise ConfigError(
            f"Agent {agent.name!r}: votes must be a positive int or an AdaptiveVotes(...), "
            f"got {votes!r}"
        )
    if verify is not None:
        problem = judge_problem(verify)
        if problem is not None:
            raise ConfigError(f"Agent {agent.name!r}: {problem}")
    job = _Job(agent, prompt, caller, tools, verify, max_output_tokens, reasoning_effort, on_check)
    if strategy is not None:
        # (imported here: the strategies are built on this module)
        from delegate.orchestrator._strategies import run_strategy

        return run_strategy(job, strategy, agents or {}, votes)
    return _checked(job, votes)


@dataclass(slots=True, eq=False)
class _Job:
    """One checked answer in the making: what every call needs, and what the calls spent."""

    agent: Agent[Any]
    prompt: str
    caller: ModelCaller | None
    tools: Sequence[Tool]
    verify: Agent[Any] | None
    max_output_tokens: int | None
    reasoning_effort: ReasoningEffort | None
    on_check: CheckListener | None
    usage: Usage = field(default_factory=Usage)
    calls: int = 0
    vote: VoteRecord | None = None
    told_usd: float = 0.0  # what the calls had cost at the last decision told

    def count(self, result: AgentResult[Any]) -> AgentResult[Any]:
        self.usage += result.usage
        self.calls += result.calls
        return result

    async def ask(
        self,
        agent: Agent[Any],
        prompt: str,
        *,
        effort: ReasoningEffort | None = None,
        sample: int = 0,
    ) -> AgentResult[Any]:
        """One run of the worker (or its fallback) with the task's settings.

        `effort` replaces the task's reasoning effort (an escalation); `sample` numbers the
        draws of identical asks (votes), so that each is a request of its own to the call cache.
        """
        caller = self.caller if sample == 0 else _Draw(self.caller, sample)
        result = await agent.run(
            prompt,
            caller=caller,
            tools=self.tools,
            max_output_tokens=self.max_output_tokens,
            reasoning_effort=self.reasoning_effort if effort is None else effort,
        )
        return self.count(result)

    def room(self, most: int) -> int:
        """How many more samples (at most `most`) the budget left can pay for: all of them
        outside a run, or when the caller cannot tell."""
        # The run's `CallGate`, or the gate behind a wrapper of it (a task's journal).
        room = getattr(self.caller, "room", None) or getattr(
            getattr(self.caller, "gate", None), "room", None
        )
        if room is None:
            return most
        request = self.agent.first_request(
            self.prompt,
            tools=self.tools,
            max_output_tokens=self.max_output_tokens,
            reasoning_effort=self.reasoning_effort,
        )
        return int(room(self.agent, request, most))

    async def judge(self, output_type: type[BaseModel], prompt: str) -> Any:
        """The judge's answer to `prompt`, as `output_type`."""
        if self.verify is None:  # only called with a judge
            raise ConfigError(f"Agent {self.agent.name!r}: no judge to ask")
        judge = with_output_type(self.verify, output_type)
        return self.count(await judge.run(prompt, caller=self.caller)).output

    def final(self, result: AgentResult[Any]) -> AgentResult[Any]:
        return dataclasses.replace(result, usage=self.usage, calls=self.calls, vote=self.vote)

    @property
    def judge_name(self) -> str | None:
        return None if self.verify is None else self.verify.name

    def note(
        self,
        check: CheckKind,
        samples: int,
        agent: str | None,
        *,
        unanimous: bool | None = None,
        passed: bool | None = None,
        feedback: str = "",
        chosen: int | None = None,
        effort: ReasoningEffort | None = None,
        judge: str | EllipsisType | None = ...,
    ) -> None:
        """Tell the listener of a decision (nothing without one), with what the calls since
        the previous one cost; `feedback` redacted and cut. `judge` is who decided (default:
        the task's judge, none for a vote)."""
        spent, self.told_usd = self.usage.cost_usd - self.told_usd, self.usage.cost_usd
        if self.on_check is None:
            return
        text = _secrets.redact(feedback, lookalikes=True)
        if len(text) > _FEEDBACK_IN_NOTE:
            text = text[:_FEEDBACK_IN_NOTE] + "…"
        vote = self.vote if check == "vote" else None
        self.on_check(
            check=check,
            samples=samples,
            agent=agent,
            unanimous=unanimous,
            passed=passed,
            feedback=text,
            chosen=chosen,
            judge=(None if check == "vote" else self.judge_name) if judge is ... else judge,
            stopped=None if vote is None else vote.stopped,
            agreement=None if vote is None else vote.agreement,
            effort=effort,
            cost_usd=spent,
        )


@dataclass(frozen=True, slots=True)
class _Draw:
    """The caller of one sample of several: its requests say which draw they are."""

    caller: ModelCaller | None
    sample: int

    async def __call__(
        self, agent: Agent[Any], model: Model, request: ModelRequest
    ) -> ModelResponse:
        request = dataclasses.replace(request, sample=self.sample)
        if self.caller is None:
            return await model.request(request)
        return await self.caller(agent, model, request)


async def _checked(job: _Job, votes: int | AdaptiveVotes) -> AgentResult[Any]:
    if votes == 1:
        answer = await job.ask(job.agent, job.prompt)
    else:
        stopped: VoteStop | None = None
        if isinstance(votes, AdaptiveVotes):
            samples, stopped = await _adaptive(job, votes)
        else:
            samples, _ = await _sample(job, votes)
        answer, unanimous, chosen = _vote(job.agent.output_type, samples)
        top = Counter(_tally_keys(job.agent.output_type, samples)).most_common(1)[0][1]
        job.vote = VoteRecord(
            samples=len(samples),
            agreement=top / len(samples),
            stopped=stopped or ("unanimous" if unanimous else "max_samples"),
        )
        job.note("vote", len(samples), answer.agent, unanimous=unanimous, chosen=chosen + 1)
        if unanimous or job.verify is None:
            return job.final(answer)
        if job.agent.output_type is None:
            return job.final(await _pick(job, samples, answer))
    return job.final(await _verified(job, answer))


async def _adaptive(job: _Job, policy: AdaptiveVotes) -> tuple[list[AgentResult[Any]], VoteStop]:
    """Samples asked (`max(min_samples, batch)` first, then `batch` at a time) until the
    stopping rule is met, `max_samples` were asked, or the budget left cannot pay for another
    (see `AdaptiveVotes`)."""
    samples: list[AgentResult[Any]] = []
    while True:
        # The first `min_samples` are all needed: they are asked together.
        size = policy.batch if samples else max(policy.batch, policy.min_samples)
        wanted = min(size, policy.max_samples - len(samples))
        # The first sample is asked whatever the room: the gate refuses it, as any call, when
        # it cannot be paid for (a vote with no sample has no answer to give).
        fits = max(job.room(wanted), 0 if samples else 1)
        if fits == 0:
            log.info("votes_stopped_by_budget", agent=job.agent.name, samples=len(samples))
            return samples, "budget"
        batch, refused = await _sample(job, fits, first=len(samples), spare=True)
        samples.extend(batch)
        if refused is not None:  # another task took the budget meanwhile: none was sent
            if not samples:
                raise refused
            return samples, "budget"
        counts = sorted(Counter(_tally_keys(job.agent.output_type, samples)).values(), reverse=True)
        left = policy.max_samples - len(samples)
        if left == 0:
            return samples, "unanimous" if len(counts) == 1 else "max_samples"
        if len(samples) >= policy.min_samples and (
            leader_chance(policy.rule, counts, left) >= policy.confidence
        ):
            return samples, "unanimous" if len(counts) == 1 else "confident"


async def _sample(
    job: _Job, count: int, *, first: int = 0, spare: bool = False
) -> tuple[list[AgentResult[Any]], BudgetExceeded | None]:
    """`count` answers (samples `first` … `first + count - 1`), asked concurrently; the first
    failure cancels the rest and is raised.

    With `spare`, a sample the budget refused (never sent) does not cancel the others: the
    answers that came, and the refusal, are returned.
    """
    refusals: list[BudgetExceeded] = []

    async def one(index: int) -> AgentResult[Any] | None:
        try:
            return await job.ask(job.agent, job.prompt, sample=first + index)
        except BudgetExceeded as exc:
            if not spare:
                raise
            refusals.append(exc)
            return None

    results = await concurrently(count, one)
    answered = [result for result in results if result is not None]
    return answered, refusals[0] if refusals else None


async def concurrently(count: int, branch: Callable[[int], Awaitable[T]]) -> list[T]:
    """`branch(0)` … `branch(count - 1)`, concurrently, in that order; the first failure cancels
    the rest and is raised as itself (not in an ExceptionGroup: the scheduler still sees whether
    it is retryable). A branch that has not started when another failed sends nothing."""
    results: dict[int, T] = {}
    failures: list[Exception] = []

    async def one(index: int, scope: anyio.CancelScope) -> None:
        await anyio.lowlevel.checkpoint_if_cancelled()
        try:
            results[index] = await branch(index)
        except Exception as exc:
            failures.append(exc)
            scope.cancel()

    async with anyio.create_task_group() as group:
        for index in range(count):
            group.start_soon(one, index, group.cancel_scope)
    if failures:
        raise failures[0]
    return [results[index] for index in range(count)]


def _tally_keys(output_type: type[BaseModel] | None, samples: list[AgentResult[Any]]) -> list[str]:
    """What the samples are counted by: the normalized text, or the whole structured answer."""
    if output_type is None:
        return [_normalized(sample.text) for sample in samples]
    return [_canonical(sample.output.model_dump(mode="json")) for sample in samples]


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _normalized(text: str) -> str:
    return " ".join(text.split()).casefold()


def _plurality(keys: Sequence[str]) -> int:
    """The index of the earliest key among the most frequent ones."""
    counts = Counter(keys)
    best = max(counts.values())
    return next(index for index, key in enumerate(keys) if counts[key] == best)


def _vote(
    output_type: type[BaseModel] | None, samples: list[AgentResult[Any]]
) -> tuple[AgentResult[Any], bool, int]:
    """The winning answer, whether every sample gave the same one, and the index of the sample
    it is credited to."""
    if output_type is None:
        keys = [_normalized(sample.text) for sample in samples]
        winner = _plurality(keys)
        return samples[winner], len(set(keys)) == 1, winner
    dumps: list[dict[str, Any]] = [sample.output.model_dump(mode="json") for sample in samples]
    wholes = [_canonical(dump) for dump in dumps]
    if len(set(wholes)) == 1:
        return samples[0], True, 0
    merged: dict[str, Any] = {}
    for name in dict.fromkeys(name for dump in dumps for name in dump):
        values = [dump[name] for dump in dumps if name in dump]
        merged[name] = values[_plurality([_canonical(value) for value in values])]
    try:
        output = output_type.model_validate(merged)
    except pydantic.ValidationError:
        # The most common whole answer; the first sample when every answer differs.
        winner = _plurality(wholes)
        return samples[winner], False, winner
    # The answer is credited to the sample that agrees with it on the most fields.
    agree = [sum(dump.get(k) == v for k, v in merged.items()) for dump in dumps]
    best = agree.index(max(agree))
    merged_answer = dataclasses.replace(samples[best], output=output, text=output.model_dump_json())
    return merged_answer, False, best


async def _pick(
    job: _Job, samples: list[AgentResult[Any]], majority: AgentResult[Any]
) -> AgentResult[Any]:
    """The judge's pick among disagreeing text samples (the majority if its pick is no answer)."""
    answers = "\n\n".join(
        f"## Answer {number}\n{sample.text}" for number, sample in enumerate(samples, 1)
    )
    prompt = PICK_PROMPT.format(count=len(samples), task=job.prompt, answers=answers)
    choice: Choice = await job.judge(Choice, prompt)
    if 1 <= choice.index <= len(samples):
        picked = samples[choice.index - 1]
        job.note("pick", len(samples), picked.agent, chosen=choice.index, feedback=choice.reason)
        return picked
    log.warning(
        "judge_pick_out_of_range",
        agent=job.agent.name,
        judge=job.judge_name,
        index=choice.index,
        answers=len(samples),
    )
    # No pick: `chosen` stays None, and the majority's answer is kept.
    job.note("pick", len(samples), majority.agent, feedback=choice.reason)
    return majority


async def _verdict(
    job: _Job, answer: AgentResult[Any], effort: ReasoningEffort | None = None
) -> Verdict:
    prompt = JUDGE_PROMPT.format(task=job.prompt, answer=format_output(answer.output))
    verdict: Verdict = await job.judge(Verdict, prompt)
    if not verdict.passed:
        log.info(
            "answer_rejected",
            agent=answer.agent,
            judge=job.judge_name,
            effort=effort,
            feedback=verdict.feedback,
            cost_usd=job.usage.cost_usd - job.told_usd,  # the answer and this verdict
        )
    job.note(
        "judge",
        1,
        answer.agent,
        passed=verdict.passed,
        feedback=verdict.feedback,
        effort=effort,
    )
    return verdict


_HIGHER_EFFORT: dict[str | None, ReasoningEffort] = {
    "minimal": "low",
    "low": "medium",
    "medium": "high",
}


def _reask_efforts(start: ReasoningEffort | None) -> list[ReasoningEffort | None]:
    """The reasoning effort of each re-ask of the worker after a rejection: one step up each
    time, up to "high" (a reasoning worker); a single re-ask as it was otherwise."""
    efforts: list[ReasoningEffort | None] = []
    effort = start
    while effort in _HIGHER_EFFORT:
        effort = _HIGHER_EFFORT[effort]
        efforts.append(effort)
    return efforts or [start]


async def _verified(job: _Job, answer: AgentResult[Any]) -> AgentResult[Any]:
    """`answer` if the judge passes it; else the worker is asked again with the feedback, one
    reasoning effort higher each time up to "high" (a reasoning worker: a task's or the agent's
    effort set; once otherwise), then its fallback (a stronger tier): each answer judged."""
    start = job.reasoning_effort or job.agent.reasoning_effort
    verdict = await _verdict(job, answer, start)
    steps: list[tuple[Agent[Any], ReasoningEffort | None]] = [
        (job.agent, effort) for effort in _reask_efforts(start)
    ]
    fallback = job.agent.fallback
    if fallback is not None:
        steps.append((fallback, job.reasoning_effort or fallback.reasoning_effort))
    for asker, effort in steps:
        if verdict.passed:
            return answer
        retry = RETRY_PROMPT.format(
            task=job.prompt, answer=format_output(answer.output), feedback=verdict.feedback
        )
        answer = await job.ask(asker, retry, effort=effort)
        verdict = await _verdict(job, answer, effort)
    if verdict.passed:
        return answer
    raise _failed(job, answer, verdict, len(steps) + 1, start)


def _failed(
    job: _Job,
    answer: AgentResult[Any],
    verdict: Verdict,
    rejected: int,
    start: ReasoningEffort | None = None,
) -> VerificationFailed:
    agent = job.agent
    judge = job.verify.name if job.verify is not None else ""
    efforts = _reask_efforts(start)
    if efforts == [start]:
        tried = "its first answer and a re-ask with the feedback"
    else:
        shown = ", ".join(str(effort) for effort in efforts)
        reasks = "re-asks" if len(efforts) > 1 else "a re-ask"
        tried = (
            f"its first answer at reasoning effort {start}, then {reasks} with the feedback at "
            f"{shown}"
        )
    remedy = f"give agent {agent.name!r} a fallback=Agent(...) with a stronger model"
    if agent.fallback is not None:
        tried += f", then its fallback {agent.fallback.name!r}"
        remedy = f"give agent {agent.name!r} a stronger fallback"
    feedback = verdict.feedback.strip() or "(no feedback)"
    quoted = feedback[:_FEEDBACK_IN_MESSAGE] + ("…" if len(feedback) > _FEEDBACK_IN_MESSAGE else "")
    return VerificationFailed(
        f"judge {judge!r} rejected {rejected} answers to the task ({tried}); its last feedback: "
        f'"{quoted}". Say in the task\'s prompt what the answer must contain, {remedy}, or '
        "check the judge's instructions",
        model=answer.model,
        agent=agent.name,
        judge=judge,
        feedback=verdict.feedback,
        attempts=rejected,
    )
