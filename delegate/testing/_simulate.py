"""Simulated models: run a whole workflow without paying, at the real models' prices and pace.

`SimulatedModel("openai/gpt-4o-mini")` stands in for the real model anywhere a `Model` goes;
`simulate(model)` makes the twin of a model you already have. `delegate run --simulate` puts one
in place of every model of a workflow, so a team sees the graph, the spend and the critical path
before paying for a run::

    from delegate import Agent, Budget, Orchestrator, TaskGraph
    from delegate.testing import simulate

    scout = Agent("scout", simulate("openai/gpt-4o-mini", time_scale=0))
    graph = TaskGraph()
    graph.add("facts", agent=scout, prompt="Size the home battery market.")
    result = Orchestrator(memory=None).execute_sync(graph, budget=Budget(usd=0.05))
    result.usage.cost_usd   # what gpt-4o-mini would have charged for these tokens

What a simulated call does:

- **Deterministic.** Each answer, its token counts and its latency come from a random generator
  seeded with a hash of (seed, model name, the request's messages) — never global random state —
  so the same request gets the same answer in every run and process, and another `seed` another.
- **Paced like the model.** Latency is time to first token + output tokens / tokens per second,
  from the model's `ModelProfile` (chosen by family: mini, nano, haiku, flash are fast; o-series,
  other reasoning models and opus are slow and bill reasoning tokens), with a little seeded jitter.
  `response.latency` and `expected_latency()` report these *simulated* seconds; the call itself
  sleeps `time_scale` times as long (0.05 plays a two-minute workflow in six seconds, 0 does not
  sleep). A run's wall-clock figures — task timestamps, a `seconds` budget — are therefore scaled
  too: give the run a `seconds` budget of `budget * time_scale`, and divide measured times by it.
- **Answers that fit the request.** A text request gets filler prose, about the profile's
  typical length, that quotes the first words of the last user message (so each task's answer
  differs). A structured request (`output_schema`) gets JSON generated from the schema — objects,
  arrays, strings with formats and patterns, numbers with bounds, `$ref`, `anyOf`/`oneOf`/`allOf`,
  `const`, `enum` — that validates; a pattern too complex to generate for gets a fixed string.
- **The happy path.** Booleans come out true: a simulated judge passes the answer and a simulated
  goal check finds the goal met, so a simulation plays the run in which everything works; it does
  not guess what failures would cost.
- **Plans.** A planner's request (`output_name == "Plan"` with `Plan`'s schema) gets a valid plan
  over the `workers` the model was given: a fan-out of 2–4 independent tasks, round-robin over the
  workers, then one task that combines them (fewer when the prompt says "at most N tasks"). A
  replan or a repair gets fresh ids (`part_1_r2`, …) that depend only on each other and on the
  tasks the prompt lists as finished or kept.
- **Provider limits.** The answer, reasoning first, is cut at `max_output_tokens` (finish reason
  "length", as a provider does), and a prompt over the model's context window raises
  `ContextWindowExceededError`.
- **Real prices.** Usage is counted with the tokenizer the budgets use and priced from litellm's
  cost map; a model whose price is unknown has `price` None, so a run with a `usd` budget refuses
  it as it would the real model.
- **No tool calls.** A simulated model answers with text or JSON and never calls tools: a
  simulation shows the graph, the spend and the critical path, not what the tools would do.
- **Streaming.** When the request has an `on_text` callback, the answer's text is passed to it in
  chunks, each at the moment the model would have produced it.

How long a run would take at the models' pace is not its wall-clock time divided by
`time_scale` (that also scales up delegate's own work, and is 0/0 at `time_scale=0`): a
`SimulatedPace`, subscribed to the orchestrator and given to the models, adds up the simulated
seconds of each task's calls and returns the critical path through the tasks' dependencies
(`SimulatedPace.run_seconds(result)`); `delegate run --simulate` prints it.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import anyio

from delegate import _schema_values
from delegate.agents import _costmap
from delegate.agents.models import Message, Model, ModelRequest, ModelResponse, Price, Usage
from delegate.agents.tokens import count_messages, count_text, truncate_text
from delegate.errors import ConfigError, ContextWindowExceededError
from delegate.orchestrator.events import Event, PlanStarted, SynthesisStarted, TaskStarted
from delegate.orchestrator.graph import TASK_ID

if TYPE_CHECKING:
    from delegate.orchestrator.run import RunResult

__all__ = ["ModelProfile", "SimulatedModel", "SimulatedPace", "profile_for", "simulate"]


# --- profiles --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelProfile:
    """How fast a model answers and how much it writes.

    Attributes:
        first_token_seconds: seconds from sending a request to the first output token.
        tokens_per_second: output tokens (reasoning included) produced per second after that.
        answer_tokens: the typical length of a text answer in tokens; each answer varies within
            ±40% of it. Structured answers are as long as their schema makes them.
        reasoning_share: the share of all output tokens spent on reasoning at medium effort: 0
            for a model that does not reason, 0.6 bills 1.5 reasoning tokens per answer token.
            Lower efforts reason less ("minimal" a quarter, "low" half), "high" twice as much.

    Raises:
        ConfigError: a value out of range.
    """

    first_token_seconds: float
    tokens_per_second: float
    answer_tokens: int
    reasoning_share: float = 0.0

    def __post_init__(self) -> None:
        checks = (
            ("first_token_seconds", self.first_token_seconds, self.first_token_seconds >= 0),
            ("tokens_per_second", self.tokens_per_second, self.tokens_per_second > 0),
            ("answer_tokens", self.answer_tokens, self.answer_tokens >= 1),
            ("reasoning_share", self.reasoning_share, 0 <= self.reasoning_share < 1),
        )
        for name, value, ok in checks:
            if isinstance(value, bool) or not isinstance(value, int | float) or not ok:
                raise ConfigError(
                    f"ModelProfile: {name}={value!r} is out of range; first_token_seconds ≥ 0, "
                    "tokens_per_second > 0, answer_tokens ≥ 1 and 0 ≤ reasoning_share < 1"
                )


_FAST = ModelProfile(first_token_seconds=0.35, tokens_per_second=140.0, answer_tokens=350)
_DEFAULT = ModelProfile(first_token_seconds=0.7, tokens_per_second=70.0, answer_tokens=450)
_QUICK_REASONING = ModelProfile(
    first_token_seconds=1.2, tokens_per_second=110.0, answer_tokens=400, reasoning_share=0.5
)
_REASONING = ModelProfile(
    first_token_seconds=2.5, tokens_per_second=45.0, answer_tokens=600, reasoning_share=0.65
)

# Matched in order against the lowercased name without its provider prefix.
_FAMILIES: tuple[tuple[re.Pattern[str], ModelProfile], ...] = (
    (re.compile(r"^(?:o\d+|gpt-5(?!-chat))[\w.-]*-(?:mini|nano)\b"), _QUICK_REASONING),
    (
        re.compile(r"^o\d+(?:-|$)|^gpt-5(?!-chat)|reason|think|(?:^|-)r1(?:-|$)|qwq|opus"),
        _REASONING,
    ),
    (re.compile(r"(?:^|[-_.:])(?:mini|nano|haiku|flash|lite|small)(?:$|[-_.:\d])"), _FAST),
)

_EFFORT_REASONING = {"minimal": 0.25, "low": 0.5, "medium": 1.0, "high": 2.0}


def profile_for(model: str) -> ModelProfile:
    """The profile of `model` by its family: fast minis, slow reasoning models, or the default.

    Args:
        model: a litellm model string such as "openai/gpt-4o-mini" or "openai/o3".
    """
    bare = model.rsplit("/", 1)[-1].lower()
    for pattern, profile in _FAMILIES:
        if pattern.search(bare):
            return profile
    return _DEFAULT


# --- the pace of a run -----------------------------------------------------------------------

# What the calls made in this context are part of: ("task", id), ("plan", revision), ("answer",).
_DOING: ContextVar[tuple[Any, ...] | None] = ContextVar("delegate_simulated_doing", default=None)


class SimulatedPace:
    """How long a run of simulated models would take at the models' pace.

    An event handler (`Orchestrator(on_event=pace)` or `orch.subscribe(pace)`) that notes, in
    the context the scheduler starts each task in, which task's calls follow (a planned run's
    plans and answer likewise); each `SimulatedModel` made with `pace=` records its calls'
    simulated latencies under it. `run_seconds(result)` is then the critical path: each task
    takes the sum of its calls' simulated seconds and starts when its dependencies (and the
    plan that made it) have ended. What the estimate leaves out: delegate's own time, rate and
    concurrency limits, the overlap of a streamed plan with the tasks it starts, and the
    overlap of a task's concurrent calls (votes).

    Attributes:
        tasks: simulated seconds of the calls of each task, by task id.
        plans: simulated seconds of a planned run's planner calls, by plan revision (its goal
            checks are counted with the revision they follow).
        other: simulated seconds of the calls outside tasks and plans (a planned run's answer).
        calls: how many simulated calls were recorded.
        waits: what tasks waited for beyond their `deps`, given the result (`run_seconds`'s
            default `after`; a compiled workflow sets it to the tasks its steps expand after).
    """

    def __init__(self) -> None:
        self.tasks: dict[str, float] = {}
        self.plans: dict[int, float] = {}
        self.other = 0.0
        self.calls = 0
        self.waits: Callable[[RunResult], Mapping[str, Sequence[str]]] | None = None

    def __call__(self, event: Event) -> None:
        """Note what the calls that follow in the event's context belong to."""
        # Handlers run synchronously in the context that emitted the event: the task's runner,
        # the planner's loop, or the run's own task for the answer.
        if isinstance(event, TaskStarted):
            _DOING.set(("task", event.task_id))
        elif isinstance(event, PlanStarted):
            _DOING.set(("plan", event.revision))
        elif isinstance(event, SynthesisStarted):
            _DOING.set(("answer",))

    def record(self, seconds: float) -> None:
        """Count one call's simulated seconds for what the current context is doing."""
        self.calls += 1
        doing = _DOING.get()
        if doing is not None and doing[0] == "task":
            self.tasks[doing[1]] = self.tasks.get(doing[1], 0.0) + seconds
        elif doing is not None and doing[0] == "plan":
            self.plans[doing[1]] = self.plans.get(doing[1], 0.0) + seconds
        else:
            self.other += seconds

    def run_seconds(
        self, result: RunResult, after: Mapping[str, Sequence[str]] | None = None
    ) -> float:
        """The run's simulated seconds: the longest path through its tasks' dependencies.

        A task starts once its dependencies, and the tasks in `after` for it, have ended (a
        workflow adds a fan-out's items, or a plan step's tasks, only then); in a planned run,
        once the plan revision that made it is complete, each revision being planned after
        the tasks before it ended. The answer comes last. 0 when no call was made.

        Args:
            result: the finished run.
            after: task id → tasks it waited for beyond its `deps` (ids not in the run are
                ignored); default: `waits(result)`.
        """
        if after is None:
            after = {} if self.waits is None else self.waits(result)
        revision_of = {t.id: plan.revision for plan in result.plans for t in plan.tasks}
        plan_end: dict[int, float] = {}
        end: dict[str, float] = {}

        def planned(revision: int) -> float:
            # Revisions are planned one after the other, each once every task before it ended.
            if revision not in plan_end:
                before = max([*end.values(), *plan_end.values()], default=0.0)
                plan_end[revision] = before + self.plans.get(revision, 0.0)
            return plan_end[revision]

        for task_id, waits in _in_order(result, after):
            start = max((end[other] for other in waits), default=0.0)
            if task_id in revision_of:
                start = max(start, planned(revision_of[task_id]))
            end[task_id] = start + self.tasks.get(task_id, 0.0)
        for plan in result.plans:  # revisions that added no task
            planned(plan.revision)
        return max([*end.values(), *plan_end.values()], default=0.0) + self.other


def _in_order(result: RunResult, after: Mapping[str, Sequence[str]]) -> list[tuple[str, list[str]]]:
    """Each task with all it waited for (`deps` and `after`), those first: the order tasks were
    added, except that a task waits for one added later (a plan step's planning task)."""
    waits = {
        task.id: [
            other
            for other in dict.fromkeys([*task.deps, *after.get(task.id, ())])
            if other in result.tasks and other != task.id
        ]
        for task in result.tasks.values()
    }
    order: list[tuple[str, list[str]]] = []
    done: set[str] = set()
    visiting: set[str] = set()
    for root in waits:
        stack = [root]  # depth first, without recursion: a graph may be 10,000 tasks deep
        while stack:
            task_id = stack[-1]
            if task_id in done:
                stack.pop()
            elif task_id not in visiting:
                visiting.add(task_id)
                # (one being visited is on a cycle, which a run cannot have: it is cut here)
                stack.extend(o for o in waits[task_id] if o not in done and o not in visiting)
            else:
                stack.pop()
                visiting.discard(task_id)
                done.add(task_id)
                order.append((task_id, [other for other in waits[task_id] if other in done]))
    return order


# --- the model -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Outcome:
    """One simulated answer: its text, token counts and timing (simulated seconds)."""

    text: str
    finish_reason: str
    output: Any
    usage: Usage
    first_text: float  # when the first answer token appears (after any reasoning)
    latency: float


class SimulatedModel:
    """Stands in for a real model: deterministic (seeded) latency and token counts from the
    model's profile, outputs that satisfy the request's JSON Schema, and the real model's price.

    See the module docstring for what a simulated call does.

    Args:
        name: the real model's litellm string, e.g. "openai/gpt-4o-mini": it picks the profile,
            the price, the context window and the tokenizer.
        seed: varies every answer, token count and latency; the same seed repeats them.
        workers: the worker names a simulated planner plans over (empty: a `Plan` request gets
            JSON generated from its schema like any other, which names no real worker).
        profile: replaces the profile chosen by the model's family.
        time_scale: the call sleeps this times the simulated latency (0: not at all).
        price: replaces the cost map's price for `name` (None: the cost map's, or unknown).
        context_window: replaces the cost map's context window (None: the cost map's, or none).
        pace: records each call's simulated latency (see `SimulatedPace`).

    Raises:
        ConfigError: an argument is invalid.
    """

    simulated: ClassVar[bool] = True
    """Always True: lets a CLI or report mark output as simulated."""

    def __init__(
        self,
        name: str,
        *,
        seed: int = 0,
        workers: Sequence[str] = (),
        profile: ModelProfile | None = None,
        time_scale: float = 1.0,
        price: Price | None = None,
        context_window: int | None = None,
        pace: SimulatedPace | None = None,
    ) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(
                f"SimulatedModel: name must be the real model's litellm string such as "
                f"'openai/gpt-4o-mini', got {name!r}"
            )
        prefix = f"SimulatedModel {name!r}: "
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"{prefix}seed must be an int, got {seed!r}")
        if isinstance(workers, str) or not all(isinstance(w, str) and w for w in workers):
            raise ConfigError(
                f"{prefix}workers must be a list of worker names, got {workers!r}; "
                "e.g. workers=['scout', 'writer']"
            )
        if (
            isinstance(time_scale, bool)
            or not isinstance(time_scale, int | float)
            or not math.isfinite(time_scale)
            or time_scale < 0
        ):
            raise ConfigError(
                f"{prefix}time_scale must be a number ≥ 0 (1: real time, 0: no waiting), "
                f"got {time_scale!r}"
            )
        if profile is not None and not isinstance(profile, ModelProfile):
            raise ConfigError(f"{prefix}profile must be a ModelProfile, got {profile!r}")
        if pace is not None and not isinstance(pace, SimulatedPace):
            raise ConfigError(f"{prefix}pace must be a SimulatedPace, got {pace!r}")
        self._name = name
        self.seed = seed
        self.workers = tuple(workers)
        self.profile = profile if profile is not None else profile_for(name)
        self.time_scale = float(time_scale)
        self._price = price
        self._context_window = context_window
        self.pace = pace
        self.requests: list[ModelRequest] = []
        """Every request this model received, in order."""

    @property
    def name(self) -> str:
        """The real model's name: usage is reported under it."""
        return self._name

    @property
    def price(self) -> Price | None:
        """USD per million tokens: the real model's, from litellm's cost map (None: unknown)."""
        return self._price if self._price is not None else _costmap.price_for(self._name)

    @property
    def context_window(self) -> int | None:
        """The most input tokens the real model accepts (None: unknown, not checked)."""
        if self._context_window is not None:
            return self._context_window
        return _costmap.context_window_for(self._name)

    @property
    def calls(self) -> int:
        """How many requests this model received."""
        return len(self.requests)

    def __repr__(self) -> str:
        return (
            f"SimulatedModel({self._name!r}, seed={self.seed}, time_scale={self.time_scale}, "
            f"calls={self.calls})"
        )

    def expected_latency(self, request: ModelRequest) -> float:
        """The simulated seconds `request` takes: exactly what `request()` would report.

        Raises:
            ContextWindowExceededError: the prompt does not fit the model's context window.
        """
        return self._simulate(request).latency

    async def request(self, request: ModelRequest) -> ModelResponse:
        """Answer `request` as the real model might, after `time_scale` × its latency.

        Raises:
            ContextWindowExceededError: the prompt does not fit the model's context window.
        """
        started = anyio.current_time()
        self.requests.append(request)
        outcome = self._simulate(request)
        on_text: Callable[[str], None] | None = getattr(request, "on_text", None)
        if on_text is not None and outcome.text:
            pieces = _chunks(outcome.text)
            step = (outcome.latency - outcome.first_text) / len(pieces)
            for n, piece in enumerate(pieces, 1):
                await self._sleep_until(started, outcome.first_text + n * step)
                on_text(piece)
        await self._sleep_until(started, outcome.latency)
        if self.pace is not None:
            self.pace.record(outcome.latency)
        return ModelResponse(
            text=outcome.text,
            output=outcome.output,
            usage=outcome.usage,
            latency=outcome.latency,
            finish_reason=outcome.finish_reason,
            model=self._name,
        )

    async def _sleep_until(self, started: float, simulated: float) -> None:
        delay = started + simulated * self.time_scale - anyio.current_time()
        if delay > 0:
            await anyio.sleep(delay)

    def _rng(self, request: ModelRequest) -> random.Random:
        key = json.dumps(
            [self.seed, self._name, [dict(m) for m in request.messages]],
            sort_keys=True,
            default=str,
        )
        return random.Random(hashlib.sha256(key.encode()).digest())

    def _simulate(self, request: ModelRequest) -> _Outcome:
        name, profile = self._name, self.profile
        input_tokens = count_messages(request.messages, name, request.tools, request.output_schema)
        window = self.context_window
        if window is not None and input_tokens > window:
            raise ContextWindowExceededError(
                f"model {name!r} (simulated): the prompt has {input_tokens:,} tokens, more than "
                f"its context window of {window:,}; shorten the prompt or the dependencies' "
                "outputs, or use a model with a larger context window",
                model=name,
            )
        rng = self._rng(request)
        answer = self._answer(request, rng)
        visible = count_text(answer, name)
        effort = _EFFORT_REASONING.get(request.reasoning_effort or "medium", 1.0)
        share = profile.reasoning_share
        reasoning = round(visible * share / (1 - share) * effort * rng.uniform(0.8, 1.2))
        text, finish = answer, "stop"
        limit = request.max_output_tokens
        if limit is not None:
            # Providers count reasoning against the same cap, and it comes first.
            reasoning = min(reasoning, limit)
            if visible > limit - reasoning:
                visible = limit - reasoning
                text = truncate_text(answer, visible, name) if visible > 0 else ""
                finish = "length"
        first = profile.first_token_seconds * rng.uniform(0.8, 1.25)
        speed = profile.tokens_per_second * rng.uniform(0.85, 1.15)
        output_tokens = visible + reasoning
        price = self.price
        usage = Usage(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            reasoning_tokens=reasoning,
            cost_usd=0.0 if price is None else price.cost(input_tokens, output_tokens),
            calls=1,
        )
        structured = request.output_schema is not None and finish == "stop"
        return _Outcome(
            text=text,
            finish_reason=finish,
            output=json.loads(text) if structured else None,
            usage=usage,
            first_text=first + reasoning / speed,
            latency=first + output_tokens / speed,
        )

    def _answer(self, request: ModelRequest, rng: random.Random) -> str:
        schema = request.output_schema
        topic = _topic(request.messages)
        if schema is None:
            target = round(self.profile.answer_tokens * rng.uniform(0.6, 1.4))
            return _prose(rng, topic, target)
        if self.workers and request.output_name == "Plan" and _is_plan_schema(schema):
            return json.dumps(_plan(request.messages, self.workers, rng), ensure_ascii=False)
        value = _schema_values.generate(schema, rng, topic=topic, sentence=_sentence)
        return json.dumps(value, ensure_ascii=False)


def simulate(
    model: Model | str,
    *,
    seed: int = 0,
    workers: Sequence[str] = (),
    time_scale: float = 1.0,
    pace: SimulatedPace | None = None,
) -> SimulatedModel:
    """The simulated twin of a real model: same name, price and context window.

    Args:
        model: a litellm model string or any `Model` (its `price` and `context_window` carry
            over when it has them).
        seed, workers, time_scale, pace: as for `SimulatedModel`.

    Raises:
        ConfigError: `model` is neither a string nor a `Model`, or another argument is invalid.
    """
    if isinstance(model, str):
        return SimulatedModel(model, seed=seed, workers=workers, time_scale=time_scale, pace=pace)
    if not isinstance(model, Model):
        raise ConfigError(
            f"simulate() takes a litellm model string or a delegate Model, got "
            f"{type(model).__name__}; e.g. simulate('openai/gpt-4o-mini')"
        )
    window = getattr(model, "context_window", None)
    return SimulatedModel(
        model.name,
        seed=seed,
        workers=workers,
        time_scale=time_scale,
        pace=pace,
        price=model.price,
        context_window=window if isinstance(window, int) and not isinstance(window, bool) else None,
    )


def _chunks(text: str) -> list[str]:
    """The pieces a stream delivers: at most 64, of at least 16 characters."""
    size = max(16, math.ceil(len(text) / 64))
    return [text[i : i + size] for i in range(0, len(text), size)]


# --- prose -----------------------------------------------------------------------------------

_SUBJECTS = (
    "The main finding",
    "The evidence",
    "Recent data",
    "A second consideration",
    "The strongest argument",
    "One open question",
    "The likely outcome",
    "A practical next step",
    "The comparison",
    "The literature",
)
_VERBS = (
    "suggests",
    "points to",
    "confirms",
    "highlights",
    "depends on",
    "argues for",
    "leaves room for",
    "is consistent with",
)
_OBJECTS = (
    "a steady shift in demand",
    "higher costs in the short term",
    "clear gains for early adopters",
    "a need for more data",
    "moderate risk",
    "lower prices over time",
    "strong interest from buyers",
    "a few well placed players",
    "tighter rules ahead",
    "a simple plan that can start now",
)
_TAILS = (
    "",
    " in most cases",
    " over the next year",
    " for the main segments",
    " according to the available sources",
    " with some caveats",
)


def _first_words(text: str, count: int) -> str:
    # Braces are dropped so quoted words can never open a template tag in a planned prompt.
    words = text.replace("{", "").replace("}", "").replace('"', "'").split()
    head = " ".join(words[:count])
    return head + "…" if len(words) > count else head


def _topic(messages: Sequence[Message]) -> str:
    users = [m["content"] for m in messages if m["role"] == "user"]
    return _first_words(users[-1], 8) if users and users[-1].strip() else "the request"


def _sentence(rng: random.Random) -> str:
    return (
        f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}{rng.choice(_TAILS)}"
    )


def _prose(rng: random.Random, topic: str, target_tokens: int) -> str:
    """Filler paragraphs about `topic`, about `target_tokens` long (~0.75 words per token)."""
    sentences = [f'On "{topic}": {_sentence(rng).lower()}.']
    words = len(sentences[0].split())
    while words < target_tokens * 0.75:
        sentence = _sentence(rng) + "."
        if len(sentences) % 5 == 4:
            sentence = "\n\n" + sentence
        sentences.append(sentence)
        words += len(sentence.split())
    return " ".join(sentences).replace(" \n\n", "\n\n")


# --- plans -----------------------------------------------------------------------------------

_REPAIR_MARK = "Your plan has these problems"
_FINISHED_HEADING = "## Finished tasks"
_KEPT = re.compile(r"have already started and are kept: ([^\n]*?)\.(?: |\n|$)")
_MAX_TASKS = re.compile(r"at most (\d+) tasks")
_LISTED_ID = re.compile(r"^- (\S+): ", re.MULTILINE)
_ASPECTS = (
    "the background and key facts",
    "the current state and recent changes",
    "the main options and their trade-offs",
    "the risks and open questions",
)


def _is_plan_schema(schema: Mapping[str, Any]) -> bool:
    properties = schema.get("properties")
    return isinstance(properties, dict) and set(properties) == {"tasks", "synthesis_note"}


def _finished_ids(system: str) -> list[str]:
    """Ids under the planner prompt's "Finished tasks" heading (`- id: summary` lines)."""
    start = system.find(_FINISHED_HEADING)
    if start < 0:
        return []
    section = system[start + len(_FINISHED_HEADING) :]
    end = section.find("\n## ")
    section = section if end < 0 else section[:end]
    return [i for i in _LISTED_ID.findall(section) if TASK_ID.match(i)]


def _kept_ids(prompt: str) -> list[str]:
    """Ids a repair request says have started and are kept."""
    found = _KEPT.search(prompt)
    if found is None:
        return []
    return [i for i in (p.strip() for p in found.group(1).split(",")) if TASK_ID.match(i)]


def _plan(messages: Sequence[Message], workers: Sequence[str], rng: random.Random) -> Any:
    """A valid plan over `workers`: 2–4 parallel parts, then one task that combines them."""
    system = "\n".join(m["content"] for m in messages if m["role"] == "system")
    users = [m["content"] for m in messages if m["role"] == "user"]
    goal = _first_words(users[0].split("\n\nYour previous", 1)[0], 8) if users else ""
    goal = goal or "the goal"
    repair = bool(users) and _REPAIR_MARK in users[-1]
    known = list(dict.fromkeys([*_finished_ids(system), *(_kept_ids(users[-1]) if users else [])]))
    suffix = ""
    if repair or known:
        # New ids on a replan or repair: a round number that appears nowhere in the prompt yet.
        everything = "\n".join(m["content"] for m in messages)
        round_ = 2
        while f"_r{round_}" in everything:
            round_ += 1
        suffix = f"_r{round_}"
    limit = _MAX_TASKS.search(system)
    parts = 2 if repair else rng.randint(2, 4)
    if limit is not None:
        parts = min(parts, int(limit.group(1)) - 1)
    if parts < 1:
        task = {
            "id": f"answer{suffix}",
            "agent": workers[0],
            "instructions": f'Answer the goal "{goal}" completely.',
            "deps": known,
            "expected_output": "The complete answer.",
        }
        return {"tasks": [task], "synthesis_note": f'Give the answer to "{goal}" as it is.'}
    tasks: list[dict[str, Any]] = [
        {
            "id": f"part_{n}{suffix}",
            "agent": workers[(n - 1) % len(workers)],
            "instructions": f'Research {aspect} for the goal "{goal}". Report what you find '
            "as short bullet points, with sources.",
            "deps": [],
            "expected_output": f"Bullet points on {aspect}.",
        }
        for n, aspect in enumerate(rng.sample(_ASPECTS, parts), 1)
    ]
    tasks.append(
        {
            "id": f"combine{suffix}",
            "agent": workers[parts % len(workers)],
            "instructions": f'Combine the findings into one answer to the goal "{goal}".',
            "deps": [*known, *(task["id"] for task in tasks)],
            "expected_output": "The answer, complete and concise.",
        }
    )
    note = f'Answer "{goal}": lead with the conclusion, then the supporting findings.'
    return {"tasks": tasks, "synthesis_note": note}
