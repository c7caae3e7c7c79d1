"""Verification and votes: a judge checks a worker's answer, or several answers vote.

`run_checked(agent, prompt, ...)` is what the scheduler calls for every model task. Without a judge
and with one vote it is exactly `agent.run(...)`, at no extra cost. Otherwise:

- `votes=N`: N answers are sampled concurrently. Structured answers vote per top-level field
  (values compared as canonical JSON), and the merged object must validate as the output type
  (else the most common whole answer wins: the first sample when all differ); text answers vote
  by their normalized text (stripped, case-folded, whitespace collapsed). Ties go to the earliest
  sample.
- `verify=judge`: the judge reads the task's prompt and the answer and returns a `Verdict`. A
  rejected answer is asked again once, with the judge's feedback and the answer in the prompt; a
  second rejection escalates to the worker's `fallback` in the same way; when that is rejected too
  (or there is no fallback) the task fails with `VerificationFailed`, which quotes the feedback.
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
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

import anyio
import anyio.lowlevel
import pydantic
from pydantic import BaseModel

from delegate import _secrets
from delegate._log import get_logger
from delegate.agents.agent import judge_problem, with_output_type
from delegate.agents.models import ReasoningEffort, Usage
from delegate.errors import ConfigError, VerificationFailed
from delegate.orchestrator.graph import format_output

if TYPE_CHECKING:
    from delegate.agents.agent import Agent, AgentResult, ModelCaller
    from delegate.agents.tools import Tool

__all__ = [
    "JUDGE_PROMPT",
    "PICK_PROMPT",
    "RETRY_PROMPT",
    "CheckListener",
    "Choice",
    "Verdict",
    "run_checked",
]

log = get_logger("delegate.checks")

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


class CheckListener(Protocol):
    """Told of each decision on a checked answer, as `run_checked` makes it.

    `check` is "vote" (the tally of `samples` answers: `unanimous`, and the number of the sample
    that won as `chosen`, from 1), "pick" (the judge's choice `chosen` among disagreeing samples,
    its reason as `feedback`) or "judge" (a verdict: `passed`, and `feedback`). `agent` is who
    gave the answer, `judge` the judge's name. `feedback` is redacted and cut to 1,000
    characters. The scheduler's listener publishes each as a `TaskChecked` event.
    """

    def __call__(
        self,
        *,
        check: Literal["vote", "pick", "judge"],
        samples: int,
        agent: str | None,
        unanimous: bool | None = None,
        passed: bool | None = None,
        feedback: str = "",
        chosen: int | None = None,
        judge: str | None = None,
    ) -> None: ...


def run_checked(
    agent: Agent[Any],
    prompt: str,
    *,
    caller: ModelCaller | None = None,
    tools: Sequence[Tool] = (),
    verify: Agent[Any] | None = None,
    votes: int = 1,
    max_output_tokens: int | None = None,
    reasoning_effort: ReasoningEffort | None = None,
    on_check: CheckListener | None = None,
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
        votes: how many answers to sample concurrently (≥ 1).
        max_output_tokens: replaces the worker's (and its fallback's) cap; None keeps theirs.
        reasoning_effort: replaces the worker's (and its fallback's) effort; None keeps theirs.
        on_check: told of each vote tally, pick and verdict (unused without votes or a judge).

    Returns:
        An awaitable of the winning `AgentResult`, with the usage and calls of every call made.

    Raises:
        VerificationFailed: the judge rejected the first answer, the re-ask and the fallback's.
        ConfigError: `votes` is not a positive int, or `verify` cannot judge.
        ModelError, BudgetExceeded: as `Agent.run`; a sample that fails fails the whole task
            (the other samples are cancelled).
    """
    if verify is None and votes == 1:
        return agent.run(
            prompt,
            caller=caller,
            tools=tools,
            max_output_tokens=max_output_tokens,
            reasoning_effort=reasoning_effort,
        )
    if isinstance(votes, bool) or not isinstance(votes, int) or votes < 1:
        raise ConfigError(f"Agent {agent.name!r}: votes must be a positive int, got {votes!r}")
    if verify is not None:
        problem = judge_problem(verify)
        if problem is not None:
            raise ConfigError(f"Agent {agent.name!r}: {problem}")
    job = _Job(agent, prompt, caller, tools, verify, max_output_tokens, reasoning_effort, on_check)
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

    def count(self, result: AgentResult[Any]) -> AgentResult[Any]:
        self.usage += result.usage
        self.calls += result.calls
        return result

    async def ask(self, agent: Agent[Any], prompt: str) -> AgentResult[Any]:
        """One run of the worker (or its fallback) with the task's settings."""
        result = await agent.run(
            prompt,
            caller=self.caller,
            tools=self.tools,
            max_output_tokens=self.max_output_tokens,
            reasoning_effort=self.reasoning_effort,
        )
        return self.count(result)

    async def judge(self, output_type: type[BaseModel], prompt: str) -> Any:
        """The judge's answer to `prompt`, as `output_type`."""
        if self.verify is None:  # only called with a judge
            raise ConfigError(f"Agent {self.agent.name!r}: no judge to ask")
        judge = with_output_type(self.verify, output_type)
        return self.count(await judge.run(prompt, caller=self.caller)).output

    def final(self, result: AgentResult[Any]) -> AgentResult[Any]:
        return dataclasses.replace(result, usage=self.usage, calls=self.calls)

    @property
    def judge_name(self) -> str | None:
        return None if self.verify is None else self.verify.name

    def note(
        self,
        check: Literal["vote", "pick", "judge"],
        samples: int,
        agent: str | None,
        *,
        unanimous: bool | None = None,
        passed: bool | None = None,
        feedback: str = "",
        chosen: int | None = None,
    ) -> None:
        """Tell the listener of a decision (nothing without one)."""
        if self.on_check is None:
            return
        text = _secrets.redact(feedback, lookalikes=True)
        if len(text) > _FEEDBACK_IN_NOTE:
            text = text[:_FEEDBACK_IN_NOTE] + "…"
        self.on_check(
            check=check,
            samples=samples,
            agent=agent,
            unanimous=unanimous,
            passed=passed,
            feedback=text,
            chosen=chosen,
            judge=None if check == "vote" else self.judge_name,
        )


async def _checked(job: _Job, votes: int) -> AgentResult[Any]:
    if votes == 1:
        answer = await job.ask(job.agent, job.prompt)
    else:
        samples = await _sample(job, votes)
        answer, unanimous, chosen = _vote(job.agent.output_type, samples)
        job.note("vote", votes, answer.agent, unanimous=unanimous, chosen=chosen + 1)
        if unanimous or job.verify is None:
            return job.final(answer)
        if job.agent.output_type is None:
            return job.final(await _pick(job, samples, answer))
    return job.final(await _verified(job, answer))


async def _sample(job: _Job, votes: int) -> list[AgentResult[Any]]:
    """`votes` answers, asked concurrently; the first failure cancels the rest and is raised."""
    results: list[AgentResult[Any] | None] = [None] * votes
    failures: list[Exception] = []

    async def one(index: int, scope: anyio.CancelScope) -> None:
        # A sample that has not started when another failed is not sent at all.
        await anyio.lowlevel.checkpoint_if_cancelled()
        try:
            results[index] = await job.ask(job.agent, job.prompt)
        except Exception as exc:
            # Raised as itself (not in an ExceptionGroup), so the scheduler still sees whether
            # it is retryable; the other samples are not worth finishing.
            failures.append(exc)
            scope.cancel()

    async with anyio.create_task_group() as group:
        for index in range(votes):
            group.start_soon(one, index, group.cancel_scope)
    if failures:
        raise failures[0]
    return [result for result in results if result is not None]


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


async def _verdict(job: _Job, answer: AgentResult[Any]) -> Verdict:
    prompt = JUDGE_PROMPT.format(task=job.prompt, answer=format_output(answer.output))
    verdict: Verdict = await job.judge(Verdict, prompt)
    if not verdict.passed:
        log.info(
            "answer_rejected", agent=answer.agent, judge=job.judge_name, feedback=verdict.feedback
        )
    job.note("judge", 1, answer.agent, passed=verdict.passed, feedback=verdict.feedback)
    return verdict


async def _verified(job: _Job, answer: AgentResult[Any]) -> AgentResult[Any]:
    """`answer` if the judge passes it, else a re-ask, then the fallback, each judged."""
    verdict = await _verdict(job, answer)
    rejected = 0
    for asker in (job.agent, job.agent.fallback):
        if verdict.passed:
            return answer
        rejected += 1
        if asker is None:
            break
        retry = RETRY_PROMPT.format(
            task=job.prompt, answer=format_output(answer.output), feedback=verdict.feedback
        )
        answer = await job.ask(asker, retry)
        verdict = await _verdict(job, answer)
    else:
        if verdict.passed:
            return answer
        rejected += 1
    raise _failed(job, answer, verdict, rejected)


def _failed(
    job: _Job, answer: AgentResult[Any], verdict: Verdict, rejected: int
) -> VerificationFailed:
    agent = job.agent
    judge = job.verify.name if job.verify is not None else ""
    tried = "its first answer and a re-ask with the feedback"
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
