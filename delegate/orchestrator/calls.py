"""The gate every model call of a run passes: reserve before, settle after, record usage.

An agent sends each call through a `ModelCaller`; during a run that caller is a `CallGate`. For a
call under a token or dollar budget it counts the request's input tokens, decides the output
allowance and reserves the worst case in every enclosing budget (task, agent, run, per call) before
anything is sent:

1. the allowance is the request's `max_output_tokens`, or a default for the reasoning effort;
2. if that does not fit what the budgets can ever give, the reasoning effort is lowered first
   (high → medium → low → minimal), then the output is shrunk, down to the agent's
   `min_output_tokens`;
3. if even that does not fit, the agent's `cheaper` model is tried; else the call is refused with
   `BudgetExceeded` and never sent;
4. if it fits only once calls in flight have settled, the gate waits for them rather than
   shrinking the call or failing it.

After the call the real usage (reasoning tokens are output tokens) replaces the reservation. A call
that fails is charged by one rule, by how far its request got (`delegate.errors.Delivery`):

- never sent (refused connection, missing SDK or key, unknown model, blocked): released, free;
- refused by the provider with no usage (400, 401, 429, ...): one call, no tokens, no money;
- anything else — a timeout, a cancellation, a dropped connection, a 5xx, an error mid-stream, an
  unexpected exception — may have reached the provider, which may bill it: it is settled at its
  reservation (the prompt plus the whole output allowance), reported as `Usage.unconfirmed_usd`.

Whatever the ledger charges is also added to the task's usage and the run's, so what a budget
counted and what the user is shown are the same numbers. Calls under a calls-only budget (the
default max_calls guard) skip the token counting; one that fails after sending is still sized
then (its prompt counted, its output at the allowance) so that its possible cost is reported.

Model wrappers (`delegate.agents.wrappers`): a routing wrapper (fallback, retry, the call cache)
is outside the gate — each request it sends passes the gate on its own, charged at the price and
under the name of the model it went to, and a cache hit is counted without being reserved or
charged. Pass-through wrappers (rate and concurrency limits, hooks) are inside it: they get the
admitted request, its prompt's token count included, and a request they hold back and that is
cancelled there is released as never sent. The orchestrator's rate limits (by model name) and
hooks apply to every request here, between the ledger and the model.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from delegate.agents.models import Model, ModelRequest, ModelResponse, Price, ReasoningEffort, Usage
from delegate.agents.rate_limits import RateLimitedModel, RateLimiter
from delegate.agents.tokens import count_messages, estimate_messages
from delegate.agents.wrappers import (
    DEFAULT_OUTPUT_TOKENS,
    EFFORT_OUTPUT_TOKENS,
    CallContext,
    ModelCall,
    ModelHooks,
    WrapperModel,
    calling,
    default_output,
    delivery_of,
    end_call,
    fail_call,
    start_call,
)
from delegate.errors import BudgetExceeded, ContextWindowExceededError, Delivery
from delegate.orchestrator._specs import verified_after
from delegate.orchestrator.budget import NANOS_PER_USD, BudgetLedger, BudgetScope, Reservation

if TYPE_CHECKING:
    from delegate.agents.agent import Agent
    from delegate.memory.blackboard import Memory
    from delegate.memory.store import Store
    from delegate.orchestrator.graph import Task

__all__ = [
    "AUTO_CALLS",
    "AUTO_CALLS_PER_ANSWER",
    "DEFAULT_OUTPUT_TOKENS",
    "EFFORT_OUTPUT_TOKENS",
    "CallGate",
    "Charged",
    "RunAccount",
    "UsageBook",
    "answers_of",
    "delivery_of",
]

_LOWER_EFFORT: Mapping[str, ReasoningEffort] = {
    "high": "medium",
    "medium": "low",
    "low": "minimal",
}


@dataclass(slots=True)
class UsageBook:
    """A run's model usage, kept per (model, agent) pair; totals are summed when asked for."""

    pairs: dict[tuple[str, str], Usage] = field(default_factory=dict)

    def add(self, model: str, agent: str, usage: Usage) -> None:
        """Count one call's usage."""
        key = (model, agent)
        previous = self.pairs.get(key)
        self.pairs[key] = usage if previous is None else previous + usage

    @property
    def total(self) -> Usage:
        """All calls of the run."""
        return sum(self.pairs.values(), Usage())

    def by(self, index: int) -> dict[str, Usage]:
        """Usage by model (`index` 0) or by agent (`index` 1)."""
        grouped: dict[str, Usage] = {}
        for key, usage in self.pairs.items():
            name = key[index]
            grouped[name] = grouped[name] + usage if name in grouped else usage
        return grouped


@dataclass(slots=True, eq=False)
class RunAccount:
    """What the calls of one run share: the ledger and its scopes, prices, usage, the deadline."""

    ledger: BudgetLedger
    run: BudgetScope | None
    prices: Mapping[str, Price]
    book: UsageBook = field(default_factory=UsageBook)
    agents: dict[str, BudgetScope] = field(default_factory=dict)
    tasks: dict[str, BudgetScope] = field(default_factory=dict)
    deadline: float | None = None
    changed: anyio.Event = field(default_factory=anyio.Event)
    waiting: int = 0
    memory: Memory | None = None
    cache: Store | None = None
    cached_models: dict[int, Model] = field(default_factory=dict)  # by id of the wrapped model
    cache_hits: int = 0
    # Rate limits by model name (the orchestrator's: shared by its runs), and the wrappers that
    # apply them, by id of the model they wrap.
    limiters: Mapping[str, RateLimiter] = field(default_factory=dict)
    limited_models: dict[int, Model] = field(default_factory=dict)
    hooks: tuple[ModelHooks, ...] = ()  # called around every request of the run
    guard: BudgetScope | None = None  # the runaway guard (max_calls)
    auto_answers: int | None = None  # max_calls="auto": the answers counted so far
    # Calls between their reservation and their charge: (model, agent, reservation).
    inflight: dict[int, tuple[str, str, Reservation]] = field(default_factory=dict)
    changes: int = 0  # bumped whenever what the calls charged changes (the store's cue)
    # Awaited before each call is sent, when the run keeps its spend durably (see `spend`).
    journal: Callable[[], Awaitable[None]] | None = None
    resumed: bool = False  # the book and the ledger were restored from a stored spend
    # (task id, agent, attempt) -> the `on_text` of a request, when a stream of the run wants
    # the answers' text as it arrives (`delegate.orchestrator.stream`); None: nothing streams.
    deltas: Callable[[str | None, str, int], Callable[[str], None]] | None = None

    def _keyed_scopes(self) -> Iterator[tuple[str, BudgetScope]]:
        # Copies first (one C-level step each under the GIL): `spend` runs in the store's writer
        # thread while the event loop may add tasks.
        agents, tasks = dict(self.agents), dict(self.tasks)
        if self.guard is not None:
            yield "guard", self.guard
        if self.run is not None and self.run is not self.guard:
            yield "run", self.run
        for name, scope in agents.items():
            yield f"agent:{name}", scope
        for task_id, scope in tasks.items():
            yield f"task:{task_id}", scope

    def spend(self) -> dict[str, Any]:
        """What the run's calls have charged, as JSON for the store: a call in flight counts at
        its reservation, since after a crash nobody can know what it cost.

        Safe to call from another thread than the event loop's (the store's writer does): it
        reads copies, each taken in one step.
        """
        scopes = {
            key: [
                scope.spent_tokens + scope.reserved_tokens,
                scope.spent_usd_nanos + scope.reserved_usd_nanos,
                scope.spent_calls + scope.reserved_calls,
            ]
            for key, scope in self._keyed_scopes()
        }
        book = UsageBook(dict(self.book.pairs))
        for model, agent, reservation in tuple(self.inflight.values()):
            book.add(model, agent, _at_reservation(reservation))
        return {
            "version": 1,
            "scopes": scopes,
            "book": [[m, a, usage.to_dict()] for (m, a), usage in book.pairs.items()],
            "refused": self.ledger.refused,
            "cache_hits": self.cache_hits,
        }

    def restore(self, spend: Mapping[str, Any]) -> None:
        """Charge what a stored run's calls spent before it stopped (`spend` from `spend()`).

        The run's budgets keep counting from there: a resumed run cannot spend its budget twice.
        """
        scopes = spend.get("scopes")
        if isinstance(scopes, Mapping):
            for key, scope in self._keyed_scopes():
                counts = scopes.get(key)
                if isinstance(counts, list) and len(counts) == 3:
                    tokens, nanos, calls = (int(value) for value in counts)
                    self.ledger.restore(scope, tokens=tokens, usd_nanos=nanos, calls=calls)
        for item in spend.get("book") or ():
            model, agent, usage = item
            self.book.add(str(model), str(agent), Usage(**usage))
        self.ledger.refused += int(spend.get("refused") or 0)
        self.cache_hits += int(spend.get("cache_hits") or 0)
        self.resumed = True

    def admit_tasks(self, tasks: Sequence[Task], agents: Sequence[Agent[Any] | None]) -> None:
        """Tasks added while the run is under way: open their budgets, grow an "auto" guard."""
        for task in tasks:
            if task.budget is not None and task.id not in self.tasks:
                self.tasks[task.id] = self.ledger.open(f"task {task.id!r}", task.budget, self.run)
        if self.auto_answers is None or self.guard is None:
            return
        self.auto_answers += sum(answers_of(t, a) for t, a in zip(tasks, agents, strict=True))
        cap = max(AUTO_CALLS, AUTO_CALLS_PER_ANSWER * self.auto_answers)
        if cap > (self.guard.budget.calls or 0):
            self.guard.budget = dataclasses.replace(self.guard.budget, calls=cap)
            self.guard.label = f"run (Orchestrator(max_calls={cap}))"

    def cached(self, model: Model) -> Model:
        """`model` behind the call cache, when the run has one."""
        if self.cache is None:
            return model
        # By identity, not name: two models may share a name (a FallbackModel and its first).
        wrapper = self.cached_models.get(id(model))
        if wrapper is None:
            from delegate.memory.cache import CachedModel

            wrapper = self.cached_models[id(model)] = CachedModel(model, self.cache)
        return wrapper

    def limited(self, model: Model) -> Model:
        """`model` within its rate limit, when the orchestrator sets one for its name."""
        limiter = self.limiters.get(model.name)
        if limiter is None:
            return model
        wrapper = self.limited_models.get(id(model))
        if wrapper is None:
            wrapper = self.limited_models[id(model)] = RateLimitedModel(model, limiter=limiter)
        return wrapper

    def price(self, model: Model) -> Price | None:
        """The model's price: the orchestrator's override, else its own; None when unknown."""
        override = self.prices.get(model.name)
        return override if override is not None else model.price

    def notify(self) -> None:
        """Wake the calls waiting for budget: something settled or was released."""
        if self.waiting:
            self.changed.set()
            self.changed = anyio.Event()

    async def wait(self) -> None:
        """Until the next settle or release."""
        self.waiting += 1
        try:
            await self.changed.wait()
        finally:
            self.waiting -= 1


AUTO_CALLS = 500
"""max_calls="auto": at least this many calls per run..."""
AUTO_CALLS_PER_ANSWER = 4
"""...or this many per answer the tasks ask for (room for retries and a short tool loop)."""


def answers_of(task: Task, agent: Agent[Any] | None) -> int:
    """How many answers a task asks for at most: its strategy's `max_calls()`, else its votes
    (1 by default; an `AdaptiveVotes` its `max_samples`), plus one for a judge (unless the judge
    is the strategy's own scorer or critic)."""
    if task.agent is None:
        return 0
    judged = task.verify is not None or (agent is not None and agent.verify is not None)
    if task.strategy is not None:  # (it replaces the worker's votes)
        return task.strategy.max_calls() + (judged and verified_after(task.strategy))
    votes = task.votes if task.votes is not None else (agent.votes if agent else 1)
    return (votes if isinstance(votes, int) else votes.max_calls()) + judged


class Charged(Protocol):
    """What a gate's calls are charged to: a task (`Node`), or the planner's calls of a run."""

    usage: Usage
    model: str | None  # the model of its first call, so a failed task still says which it called

    @property
    def task_id(self) -> str | None:
        """The task whose budget the calls also fall under (None: no task)."""
        ...


@dataclass(slots=True)
class _Ticket:
    model: Model
    request: ModelRequest
    reservation: Reservation
    sized: bool = True  # False under calls-only budgets: only the call itself is accounted


class CallGate:
    """The `ModelCaller` of one task: its calls are budgeted and their usage lands on the task."""

    __slots__ = ("account", "node")

    def __init__(self, account: RunAccount, node: Charged) -> None:
        self.account = account
        self.node = node

    def __call__(
        self, agent: Agent[Any], model: Model, request: ModelRequest
    ) -> Coroutine[Any, Any, ModelResponse]:
        # A plain call returning the coroutine to await: one frame less on every model call.
        account = self.account
        if account.deltas is not None and request.on_text is None:
            # A stream wants the text as it comes (a request that streams already keeps its
            # own: the planner's plan). The run's own calls (no task) count as attempt 1.
            node = self.node
            on_text = account.deltas(node.task_id, agent.name, getattr(node, "attempts", 1))
            request = dataclasses.replace(request, on_text=on_text)
        model = account.cached(model)
        if not (isinstance(model, WrapperModel) and model.routes):
            return self._send(agent, model, request)
        return self._route(agent, model, request)

    def room(self, agent: Agent[Any], request: ModelRequest, most: int) -> int:
        """How many calls like `request` by `agent` (at most `most`) the run's budgets can still
        reserve beside the calls in flight, each at its whole output allowance: how many more
        samples of a vote the budget left can pay for (`delegate.orchestrator.checks`).

        A per-call cap (`call_budget`) does not add up across calls and is left to the gate. A
        usd limit with no known price for the model is left to the gate too (it refuses the call
        with `PriceUnknownError`).
        """
        members: list[BudgetScope] = []
        for scope in self._scopes(agent):
            if scope.ledger is not None:  # not a per-call cap
                members.extend(member for member in scope.chain if member not in members)
        if not members:
            return most
        model = agent.model
        price = self.account.price(model)
        sized = any(m.budget.tokens is not None or m.budget.usd is not None for m in members)
        tokens = nanos = 0
        if sized:
            own = getattr(model, "count_tokens", None)
            input_tokens = (
                int(own(request))
                if own is not None
                else estimate_messages(request.messages, request.tools, request.output_schema)
            )
            wanted = request.max_output_tokens
            output_tokens = (
                wanted if wanted is not None else default_output(request.reasoning_effort)
            )
            tokens = input_tokens + output_tokens
            if price is not None:
                nanos = math.ceil(price.cost(input_tokens, output_tokens) * NANOS_PER_USD)
        fits = most
        for scope in members:
            if (calls := scope.remaining_calls) is not None:
                fits = min(fits, calls)
            if (left := scope.remaining_tokens) is not None and tokens:
                fits = min(fits, left // tokens)
            if (limit := scope.usd_limit_nanos) is not None and nanos:
                left = max(0, limit - scope.spent_usd_nanos - scope.reserved_usd_nanos)
                fits = min(fits, left // nanos)
        return max(fits, 0)

    async def _route(self, agent: Agent[Any], model: Model, request: ModelRequest) -> ModelResponse:
        """A routing wrapper (fallback, retry, the cache) sends none or several requests: each
        passes the gate on its own, through `send` (see `delegate.agents.wrappers`)."""
        context = CallContext(
            agent.name,
            self.node.task_id,
            send=functools.partial(self._send, agent),
            hit=functools.partial(self._hit, agent),
        )
        with calling(context):
            return await model.request(request)

    async def _send(self, agent: Agent[Any], model: Model, request: ModelRequest) -> ModelResponse:
        """One request: admitted (reserved), sent, and charged by how it ended."""
        account = self.account
        request = self._clip_timeout(request)
        window = _window(model)
        if window is not None and _characters(request) > window * _MAX_CHARS_PER_TOKEN:
            # Certainly too long (a hostile template's output, say): refused without
            # tokenizing megabytes, and never sent.
            raise _too_long(model.name, window, None)
        scopes = self._scopes(agent)
        ticket = None
        if scopes:
            ticket = self._admit_now(agent, model, request, scopes) or await self._enter(
                agent, model, request, scopes
            )
            model, request = ticket.model, ticket.request
        if self.node.model is None:
            self.node.model = model.name
        if account.limiters:
            model = account.limited(model)
        # Pass-through wrappers (rate and concurrency limits, hooks) see this context; a
        # routing wrapper inside one sends straight to its models (it has no `send`).
        context = (
            CallContext(agent.name, self.node.task_id) if isinstance(model, WrapperModel) else None
        )
        call: ModelCall | None = None
        if account.hooks:
            try:
                own = context or CallContext(agent.name, self.node.task_id)
                call = start_call(account.hooks, model.name, request, own)
            except BaseException:
                self._release(ticket)  # a hook refused it before it was sent
                raise
        try:
            if context is None:
                response = await model.request(request)
            else:
                with calling(context):
                    response = await model.request(request)
        except BaseException as exc:
            # Held back by a limiter and cancelled there: it never left.
            queued = context is not None and context.queued
            delivery: Delivery = "not_sent" if queued else delivery_of(exc)
            self._charge_failed(agent, model, request, ticket, delivery)
            if call is not None:
                fail_call(account.hooks, call, exc, delivery)
            raise
        response = self._settle(agent, model, ticket, response)
        if call is not None:
            end_call(account.hooks, call, response)
        return response

    def _settle(
        self, agent: Agent[Any], model: Model, ticket: _Ticket | None, response: ModelResponse
    ) -> ModelResponse:
        """Charge an answered request its real usage, at the run's price for its model."""
        account = self.account
        price = account.price(model)
        usage = response.usage
        if price is not None:
            # An override price (or a model that did not price itself) re-prices the usage.
            cost = price.cost(usage.input_tokens, usage.output_tokens, usage.cached_tokens)
            if cost != usage.cost_usd:
                usage = dataclasses.replace(usage, cost_usd=cost)
                response = dataclasses.replace(response, usage=usage)
        if ticket is not None:
            self._charge(ticket, usage)
            account.inflight.pop(id(ticket), None)
            account.notify()
        account.changes += 1
        if response.cached:
            account.cache_hits += 1
        self.node.usage += usage
        account.book.add(response.model or model.name, agent.name, usage)
        return response

    def _charge(self, ticket: _Ticket, usage: Usage) -> None:
        """Settle a ticket's reservation at `usage`; a calls-only one holds no tokens and no
        money: it is settled as the one call it is."""
        if ticket.sized:
            self.account.ledger.settle(ticket.reservation, usage)
        else:
            self.account.ledger.settle_call(ticket.reservation)

    def _hit(self, agent: Agent[Any], response: ModelResponse) -> None:
        """An answer from the call cache: no request, nothing reserved or charged; counted."""
        account = self.account
        account.changes += 1
        account.cache_hits += 1
        if self.node.model is None:
            self.node.model = response.model or None
        account.book.add(response.model, agent.name, response.usage)

    def _admit_now(
        self, agent: Agent[Any], model: Model, request: ModelRequest, scopes: Sequence[BudgetScope]
    ) -> _Ticket | None:
        """The common case, admitted without a coroutine: a calls-only budget with a call to
        spare, in a run that keeps no durable spend. None: `_enter` decides (and waits)."""
        account = self.account
        if account.journal is not None or _sized(scopes):
            return None
        reservation = account.ledger.try_reserve_call(scopes, model=model.name)
        if reservation is None:
            return None
        ticket = _Ticket(model, request, reservation, sized=False)
        self._in_flight(agent, ticket)
        return ticket

    async def _enter(
        self, agent: Agent[Any], model: Model, request: ModelRequest, scopes: Sequence[BudgetScope]
    ) -> _Ticket:
        """Admit the call (waiting for budget if it must) and journal it."""
        ticket = await self._admit(agent, model, request, scopes)
        await self._journal(agent, ticket)
        return ticket

    def _in_flight(self, agent: Agent[Any], ticket: _Ticket) -> None:
        account = self.account
        account.inflight[id(ticket)] = (ticket.model.name, agent.name, ticket.reservation)
        account.changes += 1

    async def _journal(self, agent: Agent[Any], ticket: _Ticket) -> None:
        """Count the call as in flight; when the run keeps its spend durably, wait until the
        store holds its reservation, so that no crash can lose what it may cost."""
        account = self.account
        self._in_flight(agent, ticket)
        # Only a budget the user set must survive a crash exactly; the max_calls guard and a
        # per-call cap (a scope outside the ledger) need not hold each call back for a commit.
        if account.journal is None or not any(
            scope is not account.guard and scope.ledger is not None
            for scope in ticket.reservation.scopes
        ):
            return
        try:
            await account.journal()
        except BaseException:
            self._release(ticket)  # never sent: the reservation goes back
            raise

    def _release(self, ticket: _Ticket | None) -> None:
        """Give back the reservation of a request that was never sent."""
        if ticket is None:
            return
        account = self.account
        account.inflight.pop(id(ticket), None)
        account.ledger.release(ticket.reservation)
        account.notify()

    def _clip_timeout(self, request: ModelRequest) -> ModelRequest:
        deadline = self.account.deadline
        if deadline is None:
            return request
        left = max(deadline - anyio.current_time(), 0.001)
        if request.timeout is not None and request.timeout <= left:
            return request
        return dataclasses.replace(request, timeout=left)

    def _scopes(self, agent: Agent[Any]) -> list[BudgetScope]:
        account = self.account
        scopes: list[BudgetScope] = []
        task_id = self.node.task_id
        task_scope = None if task_id is None else account.tasks.get(task_id)
        if task_scope is not None:
            scopes.append(task_scope)
        agent_scope = account.agents.get(agent.name)
        if agent_scope is not None:
            scopes.append(agent_scope)
        if not scopes and account.run is not None:
            scopes.append(account.run)
        if agent.call_budget is not None:
            # A per-call cap: a scope of its own for this one call, outside the ledger's list.
            scopes.append(BudgetScope(f"one call of agent {agent.name!r}", agent.call_budget))
        return scopes

    async def _admit(
        self, agent: Agent[Any], model: Model, request: ModelRequest, scopes: Sequence[BudgetScope]
    ) -> _Ticket:
        """Reserve the call in every scope, lowering effort, shrinking, downgrading or waiting."""
        ledger = self.account.ledger
        if not _sized(scopes):  # calls-only budgets: no need to count tokens or size the output
            while True:
                reservation = ledger.try_reserve_call(scopes, model=model.name)
                if reservation is not None:
                    return _Ticket(model, request, reservation, sized=False)
                # Raises when no call is left even after those in flight: else wait for one.
                ledger.plan(
                    scopes,
                    input_tokens=0,
                    output_tokens=0,
                    price=None,
                    model=model.name,
                    held=False,
                )
                await self.account.wait()
        candidates = [model] if agent.cheaper is None else [model, agent.cheaper]
        while True:
            for candidate in candidates:
                try:
                    ticket = self._try_admit(agent, candidate, request, scopes, count=False)
                except BudgetExceeded:
                    continue
                if ticket is not None:
                    return ticket
                break  # fits once calls in flight settle: wait, then plan again
            else:
                # No model fits, now or later: the refusal, counted once, is about the agent's own.
                # (Nothing awaited since the check above, so this raises just the same.)
                ticket = self._try_admit(agent, model, request, scopes, count=True)
                if ticket is not None:
                    return ticket
            await self.account.wait()

    def _try_admit(
        self,
        agent: Agent[Any],
        model: Model,
        request: ModelRequest,
        scopes: Sequence[BudgetScope],
        *,
        count: bool,
    ) -> _Ticket | None:
        """A reservation for `model`, None to wait, or `BudgetExceeded` when it can never fit."""
        ledger = self.account.ledger
        price = self.account.price(model)
        window = _window(model)
        effort = request.reasoning_effort
        explicit = request.max_output_tokens
        wanted = explicit if explicit is not None else default_output(effort)
        input_tokens, exact = self._input_tokens(model, request, scopes, wanted, price, window)
        if window is not None and input_tokens > window:
            raise _too_long(model.name, window, input_tokens)
        floor = min(agent.min_output_tokens, wanted)
        while True:
            # What fits once every call in flight has settled: the most this call can ever get.
            best = ledger.plan(
                scopes,
                input_tokens=input_tokens,
                output_tokens=wanted,
                price=price,
                model=model.name,
                floor=floor,
                held=False,
                count=count,
            )
            if best >= wanted or effort is None or effort not in _LOWER_EFFORT:
                break
            effort = _LOWER_EFFORT[effort]
            if explicit is None:
                wanted = min(wanted, default_output(effort))
                floor = min(floor, wanted)
        reservation = ledger.try_reserve(
            scopes, input_tokens=input_tokens, output_tokens=best, price=price, model=model.name
        )
        if reservation is None:
            return None
        # The count goes with the request: a rate limit inside the gate takes the same tokens.
        # (Not an upper bound: a tokens-per-minute limit counts exactly for itself.)
        request = dataclasses.replace(
            request,
            max_output_tokens=best,
            reasoning_effort=effort,
            input_tokens=input_tokens if exact else None,
        )
        return _Ticket(model, request, reservation)

    def _input_tokens(
        self,
        model: Model,
        request: ModelRequest,
        scopes: Sequence[BudgetScope],
        wanted: int,
        price: Price | None,
        window: int | None,
    ) -> tuple[int, bool]:
        """The request's input tokens for its reservation, and whether the count is exact.

        A model that counts its own requests (`CountsTokens`, as the fakes do) is taken at its
        word. Otherwise a tokenizer (up to 73 MB of tables, loaded on first use) is the last
        resort: a cheap upper bound is reserved instead when the call fits with room to spare —
        its whole output allowance, in every scope, now, with as much again as the bound left
        over. Then no exact count could change what the call is allowed or whether it waits;
        near a limit, or near the model's context window, the count is exact.
        """
        own = getattr(model, "count_tokens", None)
        if own is not None:
            return int(own(request)), True
        bound = estimate_messages(request.messages, request.tools, request.output_schema)
        if window is None or bound <= window:
            try:
                self.account.ledger.plan(
                    scopes,
                    input_tokens=2 * bound,
                    output_tokens=wanted,
                    price=price,
                    model=model.name,
                    floor=wanted,
                    count=False,
                )
            except BudgetExceeded:
                pass
            else:
                return bound, False
        exact = count_messages(request.messages, model.name, request.tools, request.output_schema)
        return exact, True

    def _charge_failed(
        self,
        agent: Agent[Any],
        model: Model,
        request: ModelRequest,
        ticket: _Ticket | None,
        delivery: Delivery,
    ) -> None:
        """Charge a call that raised, by how far its request got (see the module docstring)."""
        account = self.account
        usage: Usage | None = None
        if delivery == "refused":
            usage = _ONE_CALL
        elif delivery == "unknown":
            usage = _unconfirmed(ticket, account.price(model), model.name, request)
        if ticket is not None:
            if usage is None:
                account.ledger.release(ticket.reservation)
            else:
                self._charge(ticket, usage)
            account.inflight.pop(id(ticket), None)
            account.notify()
        account.changes += 1
        if usage is not None:
            self.node.usage += usage
            account.book.add(model.name, agent.name, usage)


_MAX_CHARS_PER_TOKEN = 64
"""More characters than a token of any tokenizer delegate counts with holds (runs of spaces
and repeated punctuation are the longest)."""


def _sized(scopes: Sequence[BudgetScope]) -> bool:
    """Whether any of `scopes` limits tokens or money (else only calls are counted)."""
    return any(
        member.budget.tokens is not None or member.budget.usd is not None
        for scope in scopes
        for member in scope.chain
    )


def _window(model: Model) -> int | None:
    """The model's context window in tokens, when it says (LiteLLMModel does)."""
    window = getattr(model, "context_window", None)
    return window if isinstance(window, int) and window > 0 else None


def _characters(request: ModelRequest) -> int:
    return sum(len(message.get("content") or "") for message in request.messages)


def _too_long(model: str, window: int, tokens: int | None) -> ContextWindowExceededError:
    size = "far more than that" if tokens is None else f"{tokens:,} tokens"
    return ContextWindowExceededError(
        f"{model}: the prompt does not fit the model's context window of {window:,} tokens "
        f"({size}); it was not sent — shorten the prompt or dependency context, or use a model "
        "with a larger context window",
        model=model,
        delivery="not_sent",
    )


def _rough_tokens(request: ModelRequest) -> int:
    """An estimate of a request's input tokens, on the high side: three characters a token."""
    characters = sum(len(message.get("content") or "") + 16 for message in request.messages)
    if request.tools:
        characters += sum(len(tool.description) + 200 for tool in request.tools)
    if request.output_schema is not None:
        characters += 500
    return -(-characters // 3)


def _at_reservation(reservation: Reservation) -> Usage:
    """A call charged at what it reserved (an estimate: the provider did not report it)."""
    return Usage(
        input_tokens=reservation.input_tokens,
        output_tokens=reservation.output_tokens,
        cost_usd=reservation.usd,
        calls=1,
        unconfirmed_usd=reservation.usd,
    )


def _unconfirmed(
    ticket: _Ticket | None, price: Price | None, model: str, request: ModelRequest
) -> Usage:
    """The charge for a call that may have been processed: its reservation, as an estimate."""
    if ticket is not None and ticket.sized:
        return _at_reservation(ticket.reservation)
    # Not sized before the call (a calls-only budget, or none): size it now, so that its possible
    # cost is reported. Roughly: no budget depends on it, and an exact count could load a
    # tokenizer (half a second) on the way out of a run cancelled at its deadline.
    input_tokens = _rough_tokens(request)
    output_tokens = (
        request.max_output_tokens
        if request.max_output_tokens is not None
        else default_output(request.reasoning_effort)
    )
    cost = 0.0 if price is None else price.cost(input_tokens, output_tokens)
    return Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost_usd=cost,
        calls=1,
        unconfirmed_usd=cost,
    )


_ONE_CALL = Usage(calls=1)


def planner_only_usd(book: UsageBook, planner_price: Price | None) -> float | None:
    """What every token of the run would have cost at the planner's price (None: price unknown)."""
    if planner_price is None:
        return None
    total = 0.0
    for usage in book.pairs.values():
        total += planner_price.cost(usage.input_tokens, usage.output_tokens, usage.cached_tokens)
    return total if math.isfinite(total) else None
