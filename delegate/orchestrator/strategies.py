"""How a task spends extra calls for a better answer: adaptive votes and strategies.

These are the settings, as data: a task (`TaskGraph.add`, `TaskSpec`, a workflow step, a plan)
names one, the run carries it out (`delegate.orchestrator.checks`), `estimate` prices it by
`max_calls()`, and a stored run keeps it as JSON. Workers are named (as `verify=` names a judge),
never held: a setting travels in plans, YAML and the store.

- `AdaptiveVotes` (for `votes=`): sample a few at a time and stop as soon as the leading answer
  cannot lose the vote of `max_samples` at the chosen confidence, and never a sample the budget
  left cannot pay for.
- `BestOfN`: `n` answers, each scored (by a judge agent or a scoring function); the best is kept.
- `MixtureOfAgents`: each proposer (different workers, typically different models) answers; an
  aggregator writes the final answer from the proposals.
- `SelfRefine`: answer, then critique → revise, for at most `rounds` rounds, stopping once the
  critique passes the answer.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

__all__ = [
    "AdaptiveVotes",
    "BestOfN",
    "MixtureOfAgents",
    "SelfRefine",
    "Strategy",
]

_NAME = Annotated[str, Field(min_length=1, max_length=200)]


class _Setting(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    @model_serializer(mode="wrap")
    def _with_kind(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # `kind` tells the settings apart when they are read back, so it is kept even where
        # defaults are left out (a stored graph is dumped with exclude_defaults).
        data: dict[str, Any] = handler(self)
        return {"kind": getattr(self, "kind"), **data}  # noqa: B009 - each subclass defines it


class AdaptiveVotes(_Setting):
    """Votes that stop as soon as the leading answer cannot lose.

    The first `max(min_samples, batch)` samples are asked at once, then `batch` at a time. After
    each round, with `n` samples asked, sampling stops when the leading answer would still be
    strictly ahead, at probability ≥ `confidence`, once the other `max_samples - n` samples were
    drawn (the "cannot_lose" rule: a posterior-predictive over the answers' counts, see
    `delegate.orchestrator._vote_rules`) — so the answer is the one the vote of all
    `max_samples` would most likely give. A leader more samples ahead than there are samples
    left stops the vote whatever the confidence. Sampling also stops when `max_samples` were
    asked, or when the budget left cannot pay for another sample (the result says which).

    `rule="beta"` is Adaptive-Consistency's rule (Aggarwal et al., EMNLP 2023) instead: stop when
    P(p_a > p_b) ≥ `confidence` under a Beta(a + 1, b + 1) posterior, with `a` votes for the
    leading answer and `b` for the runner-up, however many samples are left (at 0.95 a
    unanimous vote stops at its fourth sample).

    Attributes:
        max_samples: the most samples asked (the price `estimate` counts).
        min_samples: samples asked before the rule may stop sampling.
        batch: samples asked concurrently per round after the first.
        confidence: how sure the leader must be to stop early, in (0.5, 1).
        rule: "cannot_lose" (the default) or "beta".
    """

    kind: Literal["adaptive_votes"] = "adaptive_votes"
    max_samples: int = Field(default=10, ge=1, le=100)
    min_samples: int = Field(default=2, ge=1, le=100)
    batch: int = Field(default=1, ge=1, le=100)
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0)
    rule: Literal["cannot_lose", "beta"] = "cannot_lose"

    @model_validator(mode="after")
    def _bounds(self) -> AdaptiveVotes:
        if self.min_samples > self.max_samples:
            raise ValueError(
                f"min_samples ({self.min_samples}) is more than max_samples ({self.max_samples}); "
                "lower min_samples or raise max_samples"
            )
        return self

    def max_calls(self) -> int:
        """The most answers asked (a judge, if any, is counted by the caller)."""
        return self.max_samples


class BestOfN(_Setting):
    """`n` answers; each is scored and the best kept.

    Attributes:
        n: answers sampled (concurrently).
        judge: the worker that scores each answer from 0 to 10 (None: the task's `verify`
            judge, or `score`).
        score: a scoring function's import path, `"package.module:function"`, called with the
            answer's output and returning a number (higher is better): no model calls.
    """

    kind: Literal["best_of_n"] = "best_of_n"
    n: int = Field(default=4, ge=2, le=50)
    judge: _NAME | None = None
    score: _NAME | None = None

    @model_validator(mode="after")
    def _one_scorer(self) -> BestOfN:
        if self.judge is not None and self.score is not None:
            raise ValueError("give judge (a worker's name) or score (a function), not both")
        return self

    def max_calls(self) -> int:
        """Answers, plus one judge call per answer unless a scoring function scores them."""
        return self.n if self.score is not None else 2 * self.n


class MixtureOfAgents(_Setting):
    """Several proposers answer; an aggregator writes the answer from their proposals.

    Attributes:
        proposers: the workers that propose (at least two; typically on different models).
        aggregator: the worker that writes the final answer (None: the task's own worker).
    """

    kind: Literal["mixture_of_agents"] = "mixture_of_agents"
    proposers: tuple[_NAME, ...] = Field(min_length=2, max_length=20)
    aggregator: _NAME | None = None

    def max_calls(self) -> int:
        """One answer per proposer and one aggregation."""
        return len(self.proposers) + 1


class SelfRefine(_Setting):
    """Answer, then critique and revise until the critique passes, for at most `rounds` rounds.

    Attributes:
        rounds: critique → revise rounds at most.
        critic: the worker that critiques (None: the task's `verify` judge, else the worker).
    """

    kind: Literal["self_refine"] = "self_refine"
    rounds: int = Field(default=2, ge=1, le=10)
    critic: _NAME | None = None

    def max_calls(self) -> int:
        """The first answer, then a critique and a revision per round (the last revision is
        kept without another critique)."""
        return 1 + 2 * self.rounds


Strategy = Annotated[BestOfN | MixtureOfAgents | SelfRefine, Field(discriminator="kind")]
"""A task's strategy, told apart by its `kind`."""
