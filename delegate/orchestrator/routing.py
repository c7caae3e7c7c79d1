"""Learned routing: the cheapest tier and effort that passes verification, learned from history.

Opt in with `Orchestrator(routing="learned")` (or `LearnedRouting(...)` for its options) or a
workflow's top-level `routing: learned`. For each verified task the run picks an **arm**: a tier
of the task's worker — the worker itself, its `fallback`, the fallback's fallback … — and, for a
reasoning worker (one with a `reasoning_effort`, or a task that sets one), an effort among
"low", "medium" and "high". The arm's agent answers; a rejected answer still escalates along
that agent's own fallbacks, as without routing.

**What is learned.** Every routed task leaves an outcome in the run's store (`namespace`, task
kind, arm, passed, cost, latency; migration 0006): *passed* is whether the task's judge passed
its first answer (a task whose votes were unanimous, so no judge was asked, passed when it
succeeded). A task that failed before any verdict (a model error, the budget) says nothing about
quality and leaves no outcome. Outcomes are read once when the run starts (one query: passes,
trials and cost per kind and arm) and updated in memory as the run's tasks end; the run's own
outcomes are written when the run ends or stops.

**The task kind** is what outcomes are pooled by. For a task whose id was fixed before the run
(a graph task given to `execute`, a workflow step; a fan-out's `step[3]` counts as `step`) it is
the id. For a task a planner wrote it is `"<agent>#<signature>"`, the signature being the first
8 hex digits of the SHA-256 of the first 8 words of the task's instructions, case-folded with
whitespace collapsed: "Summarize the findings of …" tasks for `writer` share their history
whatever ids the planner gives them.

**The rule** (Thompson sampling over Beta posteriors). Arm *a* with *s* passes in *n* trials
has the posterior Beta(s + 1, n − s + 1). The rule's pick is the cheapest arm whose posterior
mean pass rate (s + 1)/(n + 2) meets `target`; when none does, the arm with the best mean
(the stronger one on a tie: a later tier, a higher effort). Beside it one value is drawn from
every arm's posterior, and the cheapest arm whose draw meets `target` (else the best draw) is
the sampled pick. When the two differ, the task **explores** the sampled arm — if the
exploration fits its allowance: `explore_share` of the run's USD budget, or of what the run has
spent so far when it has no USD budget (so such a run explores nothing before it has spent
anything). What an exploration counts against the allowance is what it adds over the rule's
pick: its cost less what the pick was seen to cost per task (its whole cost when the pick was
never seen);
while it runs it holds its worst case (the first answer, the re-asks and the fallback's answer a
rejection leads to, each judged), so concurrent explorations cannot overdraw the allowance
together. Cost is an arm's observed mean cost per task (the judge and escalations included) or,
before any history, its model's price for the task's prompt (4 characters a token) and output
allowance, scaled by what the kind's tried arms really cost per priced dollar.

Every decision is a `TaskRouted` event ("chose openai/gpt-4o-mini/low: 47/50 passes at $0.0003")
and a line in the run report's "Routing" section. A run with routing and no verifier anywhere is
refused when it starts (`ConfigError`): there would be nothing to learn from. Tasks without a
judge, and tasks with a `strategy` (which picks its own workers), run as they are, unrouted.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import anyio
import anyio.to_thread
from pydantic import BaseModel, ConfigDict, Field

from delegate._log import get_logger
from delegate.agents.models import ReasoningEffort
from delegate.agents.wrappers import DEFAULT_OUTPUT_TOKENS, EFFORT_OUTPUT_TOKENS
from delegate.errors import ConfigError, StoreError
from delegate.orchestrator.budget import format_usd

if TYPE_CHECKING:
    from delegate.agents.agent import Agent
    from delegate.agents.models import Price
    from delegate.memory._routing import RoutingOutcome
    from delegate.memory.store import Store
    from delegate.orchestrator.calls import RunAccount
    from delegate.orchestrator.checks import CheckListener
    from delegate.orchestrator.scheduler import Node

__all__ = [
    "ArmStats",
    "LearnedRouting",
    "RoutingDecision",
    "routing_of",
    "task_kind",
]

log = get_logger("delegate.routing")

EFFORTS: tuple[ReasoningEffort, ...] = ("low", "medium", "high")
"""The efforts a reasoning worker's arms try, cheapest first."""

MAX_TIERS = 5
"""Tiers of a fallback chain that are arms (the rest are only escalated to)."""

_SIGNATURE_WORDS = 8
_CHARS_PER_TOKEN = 4
_INDEX = re.compile(r"\[\d+\]$")


class LearnedRouting(BaseModel):
    """The settings of learned routing (`Orchestrator(routing=LearnedRouting(...))`).

    Attributes:
        target: the pass rate an arm must reach, as a posterior mean, to be chosen (0 to 1).
        explore_share: the most of the run's USD budget (or, without one, of its spend so far)
            that explorations may reserve and spend (0 to 1; 0: never explore).
        namespace: whose history is used and added to. None: the workflow's name (the run's
            `workflow=`), else "default".
        seed: seeds the posterior draws (with the number of outcomes in the history, so that
            runs differ), for reproducible decisions. None: drawn from the orchestrator's
            `seed`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["learned"] = Field(default="learned", description="Always learned.")
    target: float = Field(
        default=0.9,
        gt=0.0,
        lt=1.0,
        description="The pass rate an arm must reach (posterior mean) to be chosen. Default: 0.9.",
    )
    explore_share: float = Field(
        default=0.05,
        ge=0.0,
        le=1.0,
        description="The most of the run's USD budget (else of its spend so far) that trying "
        "arms to learn about them may add. Default: 0.05.",
    )
    namespace: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_.:-]{1,200}$",
        description="Whose history is used and added to. Default: the workflow's name.",
    )
    seed: int | None = Field(
        default=None, description="Seeds the draws, for reproducible decisions. Default: none."
    )


def routing_of(value: object) -> LearnedRouting | None:
    """`Orchestrator(routing=)` checked: None, "learned" or a `LearnedRouting`.

    Raises:
        ConfigError: anything else, with what is accepted.
    """
    if value is None or isinstance(value, LearnedRouting):
        return value
    if value == "learned":
        return LearnedRouting()
    raise ConfigError(
        f'routing must be "learned", a LearnedRouting(...) or None, got {value!r}; '
        'use routing="learned" to pick tiers and efforts from run history'
    )


def task_kind(task_id: str, agent: str, instructions: str, *, fixed: bool) -> str:
    """The kind a task's outcomes are pooled by (see the module docstring).

    Args:
        task_id: the task's id.
        agent: its worker's name.
        instructions: its prompt (the template, as written).
        fixed: whether the id was fixed before the run (a graph task, a workflow step).
    """
    if fixed:
        return _INDEX.sub("", task_id)
    words = " ".join(instructions.split()[:_SIGNATURE_WORDS]).casefold()
    return f"{agent}#{hashlib.sha256(words.encode()).hexdigest()[:8]}"


@dataclass(frozen=True, slots=True)
class ArmStats:
    """What the history says of one arm of one kind.

    Attributes:
        trials: routed tasks with an outcome.
        passes: those whose first answer passed verification.
        cost_usd: their cost, summed.
    """

    trials: int = 0
    passes: int = 0
    cost_usd: float = 0.0

    @property
    def mean(self) -> float:
        """The posterior mean pass rate, (passes + 1) / (trials + 2)."""
        return (self.passes + 1) / (self.trials + 2)

    def add(self, passed: bool, cost_usd: float) -> ArmStats:
        """These stats with one more outcome."""
        return ArmStats(self.trials + 1, self.passes + int(passed), self.cost_usd + cost_usd)


@dataclass(frozen=True, slots=True)
class RoutingDecision:
    """Why a task runs on the arm it runs on (the `TaskRouted` event carries these).

    Attributes:
        kind: the task's kind.
        arm: "<model>" or "<model>/<effort>".
        agent: the tier's agent.
        effort: the effort, for a reasoning worker.
        explored: the arm is not the rule's pick: it was tried to learn about it.
        passes, trials: the arm's history (this run's ended tasks included).
        cost_usd: what the arm is expected to cost (observed mean, else priced).
        reason: the decision in words, as the run report shows it.
    """

    kind: str
    arm: str
    agent: str
    effort: ReasoningEffort | None
    explored: bool
    passes: int
    trials: int
    cost_usd: float | None
    reason: str


@dataclass(frozen=True, slots=True)
class Arm:
    """A tier of a worker's fallback chain at an effort."""

    tier: int
    agent: Agent[Any]
    effort: ReasoningEffort | None

    @property
    def label(self) -> str:
        model = self.agent.model.name
        return model if self.effort is None else f"{model}/{self.effort}"


def arms_of(agent: Agent[Any], effort: ReasoningEffort | None) -> list[Arm]:
    """The arms of a worker, cheapest-looking first: each tier, at each effort if it reasons."""
    arms: list[Arm] = []
    seen: set[int] = set()
    tier: Agent[Any] | None = agent
    while tier is not None and len(seen) < MAX_TIERS and id(tier) not in seen:
        seen.add(id(tier))
        reasons = effort is not None or tier.reasoning_effort is not None
        levels: tuple[ReasoningEffort | None, ...] = EFFORTS if reasons else (None,)
        arms.extend(Arm(len(seen) - 1, tier, level) for level in levels)
        tier = tier.fallback
    return arms


@dataclass(slots=True, eq=False)
class Route:
    """The arm a task runs on, and the first verdict on its answers."""

    agent: Agent[Any]
    effort: ReasoningEffort | None
    decision: RoutingDecision
    reserved: float  # what an exploration holds of the exploration allowance until it ends
    baseline: float  # what the rule's pick was seen to cost (0 when never seen)
    verdict: bool | None = None

    def listen(self, publish: CheckListener | None) -> CheckListener:
        """A check listener that notes the first verdict, then tells `publish` (if any)."""

        def listener(**decision: Any) -> None:
            if decision.get("check") == "judge" and self.verdict is None:
                self.verdict = bool(decision.get("passed"))
            if publish is not None:
                publish(**decision)

        return listener


@dataclass(slots=True, eq=False)
class Router:
    """One run's routing: the history read at its start, its decisions and outcomes.

    Made by `open_router` when the run starts; the scheduler asks `route(node, agent, prompt)`
    before a task's model call and calls `ended(node)` when the task ends.
    """

    setting: LearnedRouting
    namespace: str
    run_id: str
    history: dict[tuple[str, str], ArmStats]
    rng: random.Random
    price: Callable[[Agent[Any]], Price | None]
    budget_usd: float | None
    spent: Callable[[], float]
    fixed: frozenset[str] = frozenset()
    outcomes: list[RoutingOutcome] = field(default_factory=list)
    routes: dict[str, Route] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)
    explore_spent: float = 0.0
    explore_held: float = 0.0

    # -- choosing ----------------------------------------------------------------------------

    def route(self, node: Node, agent: Agent[Any], prompt: str) -> Route | None:
        """The arm `node` runs on (the same for every attempt); None when it is not routed
        (no judge: nothing to learn from)."""
        task = node.task
        known = self.routes.get(task.id)
        if known is not None or node.verify is None or task.strategy is not None:
            return known  # no judge: nothing to learn from; a strategy picks its own workers
        kind = task_kind(
            task.id, agent.name, task.prompt, fixed=_INDEX.sub("", task.id) in self.fixed
        )
        arms = arms_of(agent, task.reasoning_effort)
        stats = [self.history.get((kind, arm.label), ArmStats()) for arm in arms]
        priced = [self._priced(arm.agent, arm.effort, prompt, node) for arm in arms]
        scale = _scale(stats, priced)
        costs = [
            stat.cost_usd / stat.trials if stat.trials else price * scale
            for stat, price in zip(stats, priced, strict=True)
        ]
        pick = _rule(stats, costs, self.setting.target)
        draws = [self.rng.betavariate(s.passes + 1, s.trials - s.passes + 1) for s in stats]
        sampled = _sampled(draws, costs, self.setting.target)
        chosen, baseline, note = pick, 0.0, ""
        reserved: float | None = None
        if sampled != pick:
            baseline = stats[pick].cost_usd / stats[pick].trials if stats[pick].trials else 0.0
            worst = scale * self._worst(arms[sampled], prompt, node)
            reserved, note = self._explore(arms[pick], arms[sampled], worst, baseline)
            if reserved is not None:
                chosen = sampled
        arm = arms[chosen]
        decision = RoutingDecision(
            kind=kind,
            arm=arm.label,
            agent=arm.agent.name,
            effort=arm.effort,
            explored=chosen != pick,
            passes=stats[chosen].passes,
            trials=stats[chosen].trials,
            cost_usd=costs[chosen] if math.isfinite(costs[chosen]) else None,
            reason=_reason(arm, stats[chosen], costs[chosen], self.setting.target, chosen != pick)
            + note,
        )
        route = Route(
            arm.agent, arm.effort or task.reasoning_effort, decision, reserved or 0.0, baseline
        )
        self.routes[task.id] = route
        self.kinds[task.id] = kind
        return route

    def _explore(
        self, rule: Arm, sampled: Arm, worst: float, baseline: float
    ) -> tuple[float | None, str]:
        """What an exploration of `sampled` holds of the allowance (None: it does not fit), and
        the decision's note. It counts what it may add over the rule's pick: its worst case less
        what the pick was seen to cost (an escalation ends on tiers the pick would have paid
        for; a pick never seen saves nothing, to be safe)."""
        extra = max(worst - baseline, 0.0)
        if not self._may_explore(extra):
            base = "the budget" if self.budget_usd is not None else "the spend so far"
            return None, (
                f"; trying {sampled.label} would exceed the exploration allowance "
                f"({format_usd(self._allowance())}, {self.setting.explore_share:.0%} of {base})"
            )
        self.explore_held += extra
        return extra, (
            f" instead of {rule.label}, to learn: the run's explorations hold "
            f"{format_usd(self.explore_spent + self.explore_held)} of their "
            f"{format_usd(self._allowance())} allowance"
        )

    def _call_cost(
        self,
        agent: Agent[Any],
        effort: ReasoningEffort | None,
        prompt: str,
        max_output_tokens: int | None,
    ) -> float:
        """One call's price: the prompt and instructions, and the output allowance."""
        price = self.price(agent)
        if price is None:
            return math.inf
        inputs = (len(prompt) + len(agent.instructions)) // _CHARS_PER_TOKEN + 1
        return price.cost(inputs, _allowance(agent, effort, max_output_tokens))

    def _priced(
        self, agent: Agent[Any], effort: ReasoningEffort | None, prompt: str, node: Node
    ) -> float:
        """A judged answer of `agent` by the models' prices, at the output allowances."""
        cost = self._call_cost(agent, effort, prompt, node.task.max_output_tokens)
        if node.verify is not None:
            cost += self._call_cost(node.verify, None, prompt, None)
        return cost

    def _worst(self, arm: Arm, prompt: str, node: Node) -> float:
        """The most an exploration of `arm` is expected to cost, in priced units, as
        `delegate.orchestrator.checks` escalates a rejected answer: re-asked once (a reasoning
        worker: one effort higher each time, up to "high"), then answered by its fallback, every
        answer judged."""
        total = self._priced(arm.agent, arm.effort, prompt, node)
        if arm.effort is None:
            total += self._priced(arm.agent, None, prompt, node)
        else:
            higher = max(len(EFFORTS) - 1 - EFFORTS.index(arm.effort), 1)
            total += higher * self._priced(arm.agent, "high", prompt, node)
        fallback = arm.agent.fallback
        if fallback is not None:
            total += self._priced(fallback, arm.effort or fallback.reasoning_effort, prompt, node)
        return total

    def _allowance(self) -> float:
        base = self.budget_usd if self.budget_usd is not None else self.spent()
        return self.setting.explore_share * base

    def _may_explore(self, worst: float) -> bool:
        if not math.isfinite(worst):
            return False
        return self.explore_spent + self.explore_held + worst <= self._allowance()

    # -- learning ----------------------------------------------------------------------------

    def ended(self, node: Node) -> None:
        """`node` ended: release its exploration's reservation and note its outcome."""
        route = self.routes.get(node.task.id)
        if route is None or node.status in ("pending", "running"):
            return
        del self.routes[node.task.id]
        cost = node.usage.cost_usd
        if route.decision.explored:  # it spent what it cost beyond the rule's pick
            self.explore_held -= route.reserved
            self.explore_spent += max(cost - route.baseline, 0.0)
        kind = self.kinds.pop(node.task.id)
        passed = route.verdict
        if passed is None and node.status == "succeeded":
            passed = True  # unanimous votes: no judge was asked
        if passed is None:
            return  # it failed before any verdict: nothing learned about its quality
        key = (kind, route.decision.arm)
        self.history[key] = self.history.get(key, ArmStats()).add(passed, cost)
        from delegate.memory._routing import RoutingOutcome

        started, finished = node.started_at, node.finished_at
        latency = 0.0 if started is None or finished is None else max(finished - started, 0.0)
        self.outcomes.append(
            RoutingOutcome(
                namespace=self.namespace,
                kind=kind,
                arm=route.decision.arm,
                passed=passed,
                cost_usd=cost,
                latency_s=latency,
                run_id=self.run_id,
                task_id=node.task.id,
                explored=route.decision.explored,
                at=datetime.now(UTC),
            )
        )

    def take_outcomes(self) -> list[RoutingOutcome]:
        """The outcomes not written yet (and forget them: they are being written)."""
        taken, self.outcomes = self.outcomes, []
        return taken


def _allowance(
    agent: Agent[Any], effort: ReasoningEffort | None, max_output_tokens: int | None
) -> int:
    cap = max_output_tokens if max_output_tokens is not None else agent.max_output_tokens
    if cap is not None:
        return cap
    level = effort or agent.reasoning_effort
    return DEFAULT_OUTPUT_TOKENS if level is None else EFFORT_OUTPUT_TOKENS[level]


def _reason(arm: Arm, stats: ArmStats, cost: float, target: float, explored: bool) -> str:
    verb = "explored" if explored else "chose"
    price = format_usd(cost) if math.isfinite(cost) else "an unknown price"
    if not stats.trials:
        told = f"no history yet, {price} a task by its price"
    else:
        told = f"{stats.passes}/{stats.trials} passes at {price}"
    if not explored and stats.mean < target:
        told += f" (no arm reaches the {target:.0%} target yet: the most likely to pass)"
    return f"{verb} {arm.label}: {told}"


def _scale(stats: Sequence[ArmStats], priced: Sequence[float]) -> float:
    """What the kind's tasks really cost per priced dollar, from the arms with history (1.0
    without any): prices at the full output allowance overstate a task, by about the same
    factor on every arm."""
    seen = sum(
        stat.cost_usd
        for stat, price in zip(stats, priced, strict=True)
        if stat.trials and math.isfinite(price)
    )
    expected = sum(
        stat.trials * price
        for stat, price in zip(stats, priced, strict=True)
        if stat.trials and math.isfinite(price)
    )
    return seen / expected if expected > 0 else 1.0


def _cheapest(order: Sequence[int], ok: Callable[[int], bool]) -> int | None:
    for index in order:
        if ok(index):
            return index
    return None


def _rule(stats: Sequence[ArmStats], costs: Sequence[float], target: float) -> int:
    """The cheapest arm whose posterior mean meets `target`; else the best mean (the stronger
    arm on a tie)."""
    order = sorted(range(len(stats)), key=lambda i: (costs[i], i))
    found = _cheapest(order, lambda i: stats[i].mean >= target)
    if found is not None:
        return found
    return max(range(len(stats)), key=lambda i: (stats[i].mean, i))


def _sampled(draws: Sequence[float], costs: Sequence[float], target: float) -> int:
    """The cheapest arm whose draw meets `target`; else the best draw."""
    order = sorted(range(len(draws)), key=lambda i: (costs[i], i))
    found = _cheapest(order, lambda i: draws[i] >= target)
    if found is not None:
        return found
    return max(range(len(draws)), key=lambda i: (draws[i], i))


async def open_router(
    setting: LearnedRouting,
    store: Store | None,
    *,
    run_id: str,
    workflow: str | None,
    account: RunAccount,
    budget_usd: float | None,
    verified: bool,
    fixed: frozenset[str],
    rng: random.Random,
) -> Router:
    """The run's router, with its namespace's history read from `store` (one query).

    Args:
        verified: some task, worker or step of the run has a judge.
        fixed: the task ids fixed before the run (graph tasks, workflow steps).
        rng: seeds the router's draws when the setting has no `seed` (the orchestrator's).

    Raises:
        ConfigError: no store to learn in, or nothing verified to learn from.
    """
    if store is None:
        raise ConfigError(
            'routing="learned" keeps what it learns in the run\'s store: pass memory=<database '
            "URL>, \"home\" or ':memory:' (or set DELEGATE_DB_URL)"
        )
    if not verified:
        raise ConfigError(
            'routing="learned" learns from verification, and nothing in this run has a judge: '
            "give the workers (or the tasks, or the workflow's steps) verify=<a judge agent>, "
            "or drop routing"
        )
    namespace = setting.namespace or workflow or "default"
    rows = await anyio.to_thread.run_sync(store.routing_history, namespace)
    history = {(row.kind, row.arm): ArmStats(row.trials, row.passes, row.cost_usd) for row in rows}
    # A given seed is mixed with how much history there is: reproducible, yet not the same
    # draws in every run (which would explore the same tasks the same way each time).
    trials = sum(stats.trials for stats in history.values())
    seed: int | str = rng.getrandbits(64) if setting.seed is None else f"{setting.seed}:{trials}"
    return Router(
        setting=setting,
        namespace=namespace,
        run_id=run_id,
        history=history,
        rng=random.Random(seed),
        price=lambda agent: account.price(agent.model),
        budget_usd=budget_usd,
        spent=lambda: account.book.total.cost_usd,
        fixed=frozenset(_INDEX.sub("", task_id) for task_id in fixed),
    )


async def save_outcomes(router: Router, store: Store) -> None:
    """Write the outcomes the run's recorder did not (it writes each with the group commit after
    its task ends; this keeps any left when the run stops — shielded); a store that fails is
    logged, not raised over the run's own result or error."""
    outcomes = router.take_outcomes()
    if not outcomes:
        return
    with anyio.CancelScope(shield=True):
        try:
            await anyio.to_thread.run_sync(store.add_routing_outcomes, outcomes)
        except StoreError as exc:
            # The run itself is kept (or its own store error is on its way up): only what it
            # taught is lost, which the next runs learn again.
            log.warning("routing_outcomes_not_kept", outcomes=len(outcomes), error=str(exc))


def driver_steps(driver: object) -> tuple[frozenset[str], bool]:
    """A workflow driver's step ids, and whether one of its steps has a judge (a planner's
    driver has neither)."""
    steps = getattr(getattr(driver, "workflow", None), "steps", None) or ()
    ids = frozenset(str(getattr(step, "id", "")) for step in steps)
    return ids, any(getattr(step, "verify", None) for step in steps)
