"""How a task spends extra calls for a better answer: adaptive votes and strategies.

These are the settings, as data: a task (`TaskGraph.add`, `TaskSpec`, a workflow step, a plan)
names one, the run carries it out (`delegate.orchestrator.checks`), `estimate` prices it by
`max_calls()`, and a stored run keeps it as JSON. Workers are named (as `verify=` names a judge),
never held: a setting travels in plans, YAML and the store.

- `AdaptiveVotes` (for `votes=`): sample in small batches and stop as soon as the leading answer
  cannot lose at the chosen confidence (the Beta stopping rule of Adaptive-Consistency, Aggarwal
  et al., EMNLP 2023), up to `max_samples`, and never a sample the budget left cannot pay for.
- `BestOfN`: `n` answers, each scored (by a judge agent or a scoring function); the best is kept.
- `MixtureOfAgents`: each proposer (different workers, typically different models) answers; an
  aggregator writes the final answer from the proposals.
- `SelfRefine`: answer, then critique → revise, for at most `rounds` rounds, stopping once the
  critique passes the answer.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

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


class AdaptiveVotes(_Setting):
    """Votes that stop as soon as the majority is settled.

    Samples are asked `batch` at a time. After each batch, with `a` votes for the leading answer
    and `b` for the runner-up, sampling stops when P(p_a > p_b) ≥ `confidence` under a
    Beta(a + 1, b + 1) posterior (the leader cannot lose), when `max_samples` were asked, or when
    the budget left cannot pay for another sample (the result says which).

    Attributes:
        max_samples: the most samples asked (the price `estimate` counts).
        min_samples: samples asked before the rule may stop sampling.
        batch: samples asked concurrently per round.
        confidence: how sure the leader must be to stop early, in (0.5, 1).
    """

    kind: Literal["adaptive_votes"] = "adaptive_votes"
    max_samples: int = Field(default=10, ge=1, le=100)
    min_samples: int = Field(default=2, ge=1, le=100)
    batch: int = Field(default=2, ge=1, le=100)
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0)

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
