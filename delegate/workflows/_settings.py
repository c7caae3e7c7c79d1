"""The `votes:` and `strategy:` settings of workflow steps and agents (re-exported by `spec`).

Each maps to a setting of `delegate.orchestrator.strategies`, whose own rules (`min_samples` ≤
`max_samples`; a judge or a score, not both) it checks. In YAML a strategy is a mapping with one
key, its kind: `strategy: {best_of_n: {n: 4, judge: critic}}`; adaptive votes are a mapping where
a count would be: `votes: {max_samples: 10, confidence: 0.95}`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    ValidationError,
    model_validator,
)

from delegate.orchestrator.strategies import (
    AdaptiveVotes,
    BestOfN,
    MixtureOfAgents,
    SelfRefine,
    Strategy,
)

__all__ = [
    "AdaptiveVotesSpec",
    "BestOfNSpec",
    "MixtureOfAgentsSpec",
    "SelfRefineSpec",
    "StrategySpec",
    "Votes",
]

# (spec.py's rule for a tool's import path: spec imports this module, so it is repeated here)
_FUNCTION_PATH = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)


def _checked_by(setting: type[BaseModel], values: Mapping[str, Any]) -> None:
    """The rules across a setting's fields are its own: a spec breaking them is a ValueError."""
    try:
        setting(**values)
    except ValidationError as exc:
        message = exc.errors(include_url=False)[0]["msg"]
        raise ValueError(message.removeprefix("Value error, ")) from None


class AdaptiveVotesSpec(_Spec):
    """Votes that stop as soon as the majority is settled (`delegate.AdaptiveVotes`)."""

    max_samples: int = Field(
        10,
        ge=1,
        le=100,
        description="The most answers sampled (what the budget counts). Default: 10.",
    )
    min_samples: int = Field(
        2, ge=1, le=100, description="Answers sampled before sampling may stop. Default: 2."
    )
    batch: int = Field(
        1,
        ge=1,
        le=100,
        description="Answers sampled at once after the first min_samples (asked together). "
        "Default: 1.",
    )
    confidence: float = Field(
        0.95,
        gt=0.5,
        lt=1,
        description="How sure the leading answer must be of winning to stop early, above 0.5 and "
        "below 1. Default: 0.95.",
    )
    rule: Literal["cannot_lose", "beta"] = Field(
        "cannot_lose",
        description="cannot_lose: stop when the leading answer would still lead once the other "
        "samples up to max_samples were drawn; beta: Adaptive-Consistency's Beta rule, "
        "P(p_leader > p_runner_up) under Beta(a + 1, b + 1). Default: cannot_lose.",
    )

    @model_validator(mode="after")
    def _valid(self) -> Self:
        _checked_by(AdaptiveVotes, self.model_dump())
        return self

    def to_votes(self) -> AdaptiveVotes:
        """The `AdaptiveVotes` this describes."""
        return AdaptiveVotes(**self.model_dump())


def _votes_kind(value: Any) -> str:
    return "adaptive" if isinstance(value, Mapping | AdaptiveVotesSpec) else "count"


Votes = Annotated[
    Annotated[int, Field(ge=1), Tag("count")] | Annotated[AdaptiveVotesSpec, Tag("adaptive")],
    Discriminator(_votes_kind),
]
"""`votes:` a number of answers, or a mapping of `AdaptiveVotesSpec` keys."""


class BestOfNSpec(_Spec):
    """`n` answers, each scored; the best is kept (`delegate.BestOfN`)."""

    n: int = Field(4, ge=2, le=50, description="Answers sampled at once. Default: 4.")
    judge: str | None = Field(
        None,
        description="The agent that scores each answer from 0 to 10. Default: the step's verify "
        "(else its agent's).",
    )
    score: Annotated[str, StringConstraints(pattern=_FUNCTION_PATH)] | None = Field(
        None,
        description="Instead of judge: a function `package.module:function` called with an "
        "answer's output, returning a number (higher is better); no model call. Default: none.",
    )

    @model_validator(mode="after")
    def _valid(self) -> Self:
        _checked_by(BestOfN, self.model_dump())
        return self


class MixtureOfAgentsSpec(_Spec):
    """Several agents propose; an aggregator writes the answer (`delegate.MixtureOfAgents`)."""

    proposers: list[str] = Field(
        min_length=2,
        max_length=20,
        description="The agents that propose answers: at least two, typically on different models.",
    )
    aggregator: str | None = Field(
        None,
        description="The agent that writes the answer from the proposals. Default: the step's.",
    )


class SelfRefineSpec(_Spec):
    """Answer, then critique and revise until the critique passes (`delegate.SelfRefine`)."""

    rounds: int = Field(2, ge=1, le=10, description="Critique → revise rounds at most. Default: 2.")
    critic: str | None = Field(
        None, description="The agent that critiques. Default: the step's verify, else its agent."
    )


class StrategySpec(_Spec):
    """How a step spends more calls on a better answer: exactly one of its keys."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1, "maxProperties": 1})

    best_of_n: BestOfNSpec | None = Field(
        None, description="n answers, each scored by a judge (or a function); the best is kept."
    )
    mixture_of_agents: MixtureOfAgentsSpec | None = Field(
        None, description="Each proposer answers; the aggregator writes the answer from them."
    )
    self_refine: SelfRefineSpec | None = Field(
        None, description="Answer, then critique → revise until the critique passes."
    )

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        # `self_refine:` with nothing after it: that strategy with its defaults.
        if isinstance(data, Mapping):
            return {key: {} if value is None else value for key, value in data.items()}
        return data

    @model_validator(mode="after")
    def _one(self) -> Self:
        given = [key for key in type(self).model_fields if getattr(self, key) is not None]
        if len(given) != 1:
            shown = f"gives {', '.join(given)}" if given else "is empty"
            raise ValueError(
                f"a strategy is one of best_of_n, mixture_of_agents or self_refine, but this one "
                f"{shown}; give exactly one, e.g. {{best_of_n: {{n: 4, judge: critic}}}}"
            )
        return self

    def to_strategy(self) -> Strategy:
        """The `BestOfN`, `MixtureOfAgents` or `SelfRefine` this describes."""
        if self.best_of_n is not None:
            return BestOfN(**self.best_of_n.model_dump())
        if self.mixture_of_agents is not None:
            settings = self.mixture_of_agents
            return MixtureOfAgents(
                proposers=tuple(settings.proposers), aggregator=settings.aggregator
            )
        return SelfRefine(**(self.self_refine or SelfRefineSpec()).model_dump())
