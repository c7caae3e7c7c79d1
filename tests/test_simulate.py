"""`SimulatedModel`: deterministic pace, tokens and prices, schema-valid answers, valid plans."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Annotated, Any, Literal

import anyio
import jsonschema
import pytest
from pydantic import BaseModel, Field, HttpUrl

import delegate
from delegate import Agent, Budget, LiteLLMModel, Orchestrator, TaskGraph
from delegate.agents.models import Message, ModelRequest, Price, ToolDefinition
from delegate.agents.tokens import count_messages, count_text
from delegate.errors import ConfigError, ContextWindowExceededError, PriceUnknownError
from delegate.orchestrator.planner import Plan, Planner, validate_plan
from delegate.testing import (
    FunctionModel,
    ModelProfile,
    SimulatedModel,
    SimulatedPace,
    profile_for,
    simulate,
)

pytestmark = pytest.mark.anyio

MINI = "openai/gpt-4o-mini"
O3 = "openai/o3"
WORKERS = ("scout", "analyst", "writer")


def _ask(content: str, *, system: str = "", **fields: Any) -> ModelRequest:
    messages: list[Message] = []
    if system:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": content})
    return ModelRequest(messages=messages, **fields)


def _structured(model: type[BaseModel], content: str = "Extract the facts.") -> ModelRequest:
    return _ask(content, output_schema=model.model_json_schema(), output_name=model.__name__)


def _fields(response: Any) -> tuple[Any, ...]:
    return (
        response.text,
        response.output,
        response.usage,
        response.latency,
        response.finish_reason,
        response.model,
    )


# --- determinism -----------------------------------------------------------------------------


async def test_the_same_seed_gives_the_same_answers_and_another_seed_others() -> None:
    requests = [
        _ask("Research customers of the home battery market."),
        _structured(Plan, "Plan a study of bees."),  # no workers: generated from the schema
    ]
    first, again, other = (SimulatedModel(O3, seed=s, time_scale=0) for s in (7, 7, 8))
    for request in requests:
        a, b, c = (
            await first.request(request),
            await again.request(request),
            await other.request(request),
        )
        assert _fields(a) == _fields(b)
        assert first.expected_latency(request) == a.latency
        assert a.text != c.text
        assert a.latency != c.latency


async def test_each_prompt_gets_its_own_answer_quoting_its_first_words() -> None:
    model = SimulatedModel(MINI, time_scale=0)
    customers = await model.request(_ask("Research customers of the home battery market."))
    rivals = await model.request(_ask("Research {{ rivals }} of the home battery market."))
    assert customers.text.startswith('On "Research customers of the home battery market.":')
    # braces are dropped, so an answer quoted in a later prompt never opens a template tag
    assert rivals.text.startswith('On "Research rivals of the home battery market.":')
    assert customers.text != rivals.text
    assert model.calls == 2


# --- schema conformance ----------------------------------------------------------------------


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Source(BaseModel):
    url: HttpUrl
    title: str = Field(min_length=3, max_length=20)
    published: datetime.date
    seen_at: datetime.datetime | None = None


class Finding(BaseModel):
    claim: str
    confidence: float = Field(ge=0, le=1)
    sources: list[Source] = Field(min_length=1, max_length=4)
    color: Color
    kind: Literal["fact", "opinion"]
    tag: Literal["x"]
    count: int = Field(gt=0, lt=10, multiple_of=3)
    code: str = Field(pattern=r"^[A-Z]{3}-\d{2,4}$")
    id: uuid.UUID
    price: Decimal
    tags: set[str]
    pair: tuple[int, str]
    scores: dict[str, int]
    note: str | None = None
    step: float = Field(multiple_of=0.25, gt=0, le=1)


class Node(BaseModel):
    name: str
    children: list[Node] = []
    parent: Node | None = None


class Cat(BaseModel):
    pet: Literal["cat"]
    meows: int


class Dog(BaseModel):
    pet: Literal["dog"]
    barks: float


class Owner(BaseModel):
    pet: Annotated[Cat | Dog, Field(discriminator="pet")]
    either: int | str
    pets: list[Cat | Dog] = Field(min_length=2)
    wait: datetime.timedelta
    at: datetime.time


class Verdict(BaseModel):
    label: Literal["spam", "ham"]
    confidence: float


@pytest.mark.parametrize("output_type", [Finding, Node, Owner, Verdict, Plan])
async def test_structured_answers_round_trip_through_pydantic(
    output_type: type[BaseModel],
) -> None:
    schema = output_type.model_json_schema()
    for seed in range(25):
        model = SimulatedModel(MINI, seed=seed, time_scale=0)
        response = await model.request(_structured(output_type))
        output_type.model_validate_json(response.text)
        jsonschema.Draft202012Validator(schema).validate(response.output)
        assert response.output == json.loads(response.text)
        assert response.finish_reason == "stop"


async def test_recursive_schemas_end() -> None:
    def depth(node: Node | None) -> int:
        if node is None:
            return 0
        return 1 + max([depth(node.parent), *(depth(child) for child in node.children)])

    for seed in range(10):
        response = await SimulatedModel(MINI, seed=seed, time_scale=0).request(_structured(Node))
        assert 1 <= depth(Node.model_validate_json(response.text)) <= 8


DRAFT4 = "http://json-schema.org/draft-04/schema#"
SCHEMAS: dict[str, dict[str, Any]] = {
    "$defs": {
        "type": "object",
        "properties": {"letters": {"$ref": "#/$defs/Letters"}, "n": {"$ref": "#/$defs/N"}},
        "required": ["letters", "n"],
        "$defs": {
            "Letters": {
                "type": "array",
                "items": {"enum": ["x", "y", "z"]},
                "minItems": 2,
                "maxItems": 3,
                "uniqueItems": True,
            },
            "N": {"type": "integer", "minimum": 3, "maximum": 5},
        },
    },
    "definitions": {
        "definitions": {"slug": {"type": "string", "pattern": "^[a-z0-9_]{3,8}$"}},
        "type": "array",
        "items": {"$ref": "#/definitions/slug"},
        "minItems": 5,
    },
    "anyOf with null": {"anyOf": [{"type": "string", "maxLength": 3}, {"type": "null"}]},
    "oneOf overlapping": {"oneOf": [{"type": "integer"}, {"type": "number"}]},
    "oneOf tagged": {
        "oneOf": [
            {"type": "object", "properties": {"kind": {"const": "a"}}, "required": ["kind"]},
            {
                "type": "object",
                "properties": {"kind": {"const": "b"}, "n": {"type": "integer"}},
                "required": ["kind", "n"],
            },
        ]
    },
    "allOf": {
        "allOf": [
            {
                "type": "object",
                "properties": {"x": {"type": "integer", "minimum": 5}},
                "required": ["x"],
            },
            {"properties": {"x": {"maximum": 7}, "y": {"const": 3}}, "required": ["y"]},
        ]
    },
    "enum": {"enum": ["north", 2, None, {"a": 1}]},
    "draft 4 exclusive flags": {
        "$schema": DRAFT4,
        "type": "number",
        "minimum": 1,
        "exclusiveMinimum": True,
        "maximum": 2,
        "exclusiveMaximum": True,
    },
    "exclusive numbers": {"type": "integer", "exclusiveMinimum": -10, "exclusiveMaximum": -5},
    "multipleOf float": {"type": "number", "multipleOf": 0.1, "minimum": 0.3, "maximum": 0.9},
    "multipleOf int": {"type": "integer", "multipleOf": 7, "minimum": 100, "maximum": 120},
    "map": {"type": "object", "minProperties": 3, "additionalProperties": {"type": "number"}},
    "property names": {
        "type": "object",
        "propertyNames": {"enum": ["k1", "k2"]},
        "additionalProperties": {"type": "integer"},
    },
    "no extra properties": {
        "type": "object",
        "properties": {"a": {"type": "string"}, "b": {"type": "integer"}},
        "additionalProperties": False,
        "maxProperties": 1,
    },
    "prefixItems": {
        "type": "array",
        "prefixItems": [{"type": "integer"}, {"type": "string", "format": "email"}],
        "items": False,
        "minItems": 2,
    },
    "nullable type list": {"type": ["string", "null"], "minLength": 40},
    "pattern": {"type": "string", "pattern": r"^(foo|bar)+-\d{3}\.[A-F]{2}$"},
    "formats": {
        "type": "object",
        "properties": {
            name: {"type": "string", "format": name}
            for name in ("date", "date-time", "time", "email", "uri", "uuid", "ipv4", "ipv6")
        },
        "required": ["date", "date-time", "time", "email", "uri", "uuid", "ipv4", "ipv6"],
    },
    "untyped": {"properties": {"anything": {}}, "required": ["anything"]},
}


# Schemas with a single possible value, or a string cut to 3 characters
FEW_VALUES = {"allOf", "oneOf tagged", "anyOf with null"}


@pytest.mark.parametrize("name", SCHEMAS)
async def test_hand_written_schemas_are_followed(name: str) -> None:
    schema = SCHEMAS[name]
    validator_class = jsonschema.validators.validator_for(schema)
    validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)
    answers = set()
    for seed in range(30):
        model = SimulatedModel(MINI, seed=seed, time_scale=0)
        response = await model.request(
            _ask("Fill it in.", output_schema=schema, output_name="output")
        )
        validator.validate(response.output)
        answers.add(response.text)
    if name not in FEW_VALUES:
        assert len(answers) > 1  # the seed varies what is generated


async def test_booleans_take_the_happy_path() -> None:
    class Check(BaseModel):
        passed: bool
        feedback: str

    for seed in range(10):
        model = SimulatedModel(MINI, seed=seed, time_scale=0)
        response = await model.request(_structured(Check))
        assert Check.model_validate_json(response.text).passed is True


async def test_an_unsupported_pattern_gets_a_fixed_safe_string() -> None:
    schema = {"type": "string", "pattern": "(?<=x)y"}  # a lookbehind: nothing simple matches
    response = await SimulatedModel(MINI, time_scale=0).request(
        _ask("Fill it in.", output_schema=schema)
    )
    assert response.output == "simulated"


# --- plans -----------------------------------------------------------------------------------


def _agents(names: tuple[str, ...] = WORKERS) -> dict[str, Agent]:
    return {name: Agent(name, SimulatedModel(MINI, time_scale=0)) for name in names}


def _planner_model(seed: int = 0) -> SimulatedModel:
    return SimulatedModel(O3, seed=seed, workers=WORKERS, time_scale=0)


def _plan_request(system: str, user: str) -> ModelRequest:
    return _ask(user, system=system, output_schema=Plan.model_json_schema(), output_name="Plan")


async def test_the_planner_gets_a_valid_fan_out_plan_over_the_workers() -> None:
    goal = "Compare three {{ papers }} on sodium battery chemistry and recommend one."
    workers = _agents()
    sizes = set()
    for seed in range(12):
        model = _planner_model(seed)
        result = await Planner(Agent("planner", model)).plan(
            goal, inputs={}, workers=workers, budget_text="no limit"
        )
        plan = result.plan
        assert (result.attempts, model.calls) == (1, 1)
        assert validate_plan(plan, workers=workers, max_tasks=20) == []
        *parts, combine = plan.tasks
        sizes.add(len(parts))
        assert [t.id for t in parts] == [f"part_{n}" for n in range(1, len(parts) + 1)]
        assert [t.agent for t in plan.tasks] == [
            WORKERS[n % 3] for n in range(len(plan.tasks))
        ]  # round-robin
        assert all(t.deps == [] for t in parts)
        assert (combine.id, combine.deps) == ("combine", [t.id for t in parts])
        quoted = '"Compare three papers on sodium battery chemistry and…"'
        assert all(quoted in t.instructions for t in plan.tasks)
        assert plan.synthesis_note
    assert sizes == {2, 3, 4}


async def test_a_replan_plans_new_ids_after_the_finished_tasks() -> None:
    workers = _agents()
    planner = Planner(Agent("planner", _planner_model()))
    finished = {"part_1": "notes: prices fell", "part_2": "notes on rivals"}
    system = planner.render(
        "Compare chemistries.",
        inputs={"market": "home batteries"},
        workers=workers,
        budget_text="no limit",
        finished=finished,
        failures={"combine": "timed out"},
    )
    response = await _planner_model().request(_plan_request(system, "Compare chemistries."))
    plan = Plan.model_validate_json(response.text)
    assert validate_plan(plan, workers=workers, max_tasks=20, finished=list(finished)) == []
    assert all(task.id.endswith("_r2") for task in plan.tasks)
    combine = plan.tasks[-1]
    assert combine.deps[:2] == ["part_1", "part_2"]  # builds on the finished work


async def test_a_repair_takes_a_round_number_not_used_before() -> None:
    workers = _agents()
    system = Planner(Agent("planner", _planner_model())).render(
        "Compare chemistries.", inputs={}, workers=workers, budget_text="no limit"
    )
    repair = (
        'Compare chemistries.\n\nYour previous plan:\n\n```json\n{"tasks": [{"id": '
        '"part_1_r2"}]}\n```\n\nYour plan has these problems:\n- the plan\'s projected cost is '
        "over the budget\n\nThese tasks of your previous plan have already started and are "
        "kept: part_1_r2. Later tasks may depend on them; do not change them.\n\n"
        "Return a corrected plan."
    )
    response = await _planner_model().request(_plan_request(system, repair))
    plan = Plan.model_validate_json(response.text)
    assert [t.id for t in plan.tasks] == ["part_1_r3", "part_2_r3", "combine_r3"]
    assert plan.tasks[-1].deps == ["part_1_r2", "part_1_r3", "part_2_r3"]
    assert validate_plan(plan, workers=workers, max_tasks=20, finished=["part_1_r2"]) == []


@pytest.mark.parametrize("max_tasks", [1, 2, 3])
async def test_plans_stay_within_max_tasks(max_tasks: int) -> None:
    workers = _agents()
    for seed in range(6):
        model = _planner_model(seed)
        result = await Planner(Agent("planner", model), max_tasks=max_tasks).plan(
            "Summarize the field.", inputs={}, workers=workers, budget_text="no limit"
        )
        assert result.attempts == 1
        assert len(result.plan.tasks) <= max_tasks
        assert validate_plan(result.plan, workers=workers, max_tasks=max_tasks) == []


async def test_without_workers_or_with_another_plan_schema_the_schema_is_followed() -> None:
    class OtherPlan(BaseModel):  # a user's own output type that happens to be called Plan
        steps: list[str] = Field(min_length=1)

    schema = OtherPlan.model_json_schema()
    own = await _planner_model().request(_ask("Go.", output_schema=schema, output_name="Plan"))
    OtherPlan.model_validate_json(own.text)
    unplanned = SimulatedModel(O3, time_scale=0)
    response = await unplanned.request(_plan_request("You plan.", "Go."))
    plan = Plan.model_validate_json(response.text)
    assert validate_plan(plan, workers=_agents(), max_tasks=20) != []  # names no real worker


# --- prices, tokens, pace ----------------------------------------------------------------------


async def test_prices_and_token_counts_are_the_real_models() -> None:
    model = SimulatedModel(MINI, time_scale=0)
    price = LiteLLMModel(MINI).price
    assert price is not None
    assert model.price == price
    assert model.context_window == LiteLLMModel(MINI).context_window
    request = _ask("Research customers.", system="Answer in five bullets.")
    response = await model.request(request)
    usage = response.usage
    assert usage.input_tokens == count_messages(request.messages, MINI)
    assert usage.output_tokens == count_text(response.text, MINI)
    assert usage.cost_usd == price.cost(usage.input_tokens, usage.output_tokens)
    assert (usage.calls, usage.reasoning_tokens, response.model) == (1, 0, MINI)
    assert SimulatedModel("local/mystery-model").price is None


async def test_a_reasoning_model_bills_reasoning_and_effort_scales_it() -> None:
    request = _ask("Research customers of the home battery market.")
    model = SimulatedModel(O3, time_scale=0)
    low = await model.request(dataclasses.replace(request, reasoning_effort="low"))
    high = await model.request(dataclasses.replace(request, reasoning_effort="high"))
    assert low.text == high.text  # the answer is the same; only the thinking differs
    visible = count_text(low.text, O3)
    assert 0 < low.usage.reasoning_tokens < high.usage.reasoning_tokens
    for response in (low, high):
        assert response.usage.output_tokens == visible + response.usage.reasoning_tokens


async def test_a_mini_model_answers_faster_than_an_o_series_model() -> None:
    for n in range(10):
        request = _ask(f"Research angle {n} of the home battery market.")
        mini = await SimulatedModel(MINI, time_scale=0).request(request)
        o3 = await SimulatedModel(O3, time_scale=0).request(request)
        assert mini.latency < o3.latency
        assert mini.usage.reasoning_tokens == 0 < o3.usage.reasoning_tokens


async def test_latency_follows_the_profile() -> None:
    profile = ModelProfile(
        first_token_seconds=1.0, tokens_per_second=100.0, answer_tokens=200, reasoning_share=0.5
    )
    model = SimulatedModel(MINI, profile=profile, time_scale=0)
    response = await model.request(_ask("Research customers."))
    tokens = response.usage.output_tokens
    # jitter: first token ×0.8–1.25, speed ×0.85–1.15
    assert 0.8 + tokens / 115 <= response.latency <= 1.25 + tokens / 85
    assert 0.3 * 200 <= tokens - response.usage.reasoning_tokens <= 1.6 * 200


async def test_max_output_tokens_cuts_the_answer_like_a_provider() -> None:
    request = _ask("Research customers of the home battery market.")
    full = await SimulatedModel(MINI, time_scale=0).request(request)
    cut = await SimulatedModel(MINI, time_scale=0).request(
        dataclasses.replace(request, max_output_tokens=20)
    )
    assert (cut.finish_reason, cut.usage.output_tokens) == ("length", 20)
    assert full.text.startswith(cut.text)
    assert len(cut.text) < len(full.text)
    assert cut.latency < full.latency

    structured = await SimulatedModel(MINI, time_scale=0).request(
        dataclasses.replace(_structured(Finding), max_output_tokens=10)
    )
    assert (structured.finish_reason, structured.output) == ("length", None)

    # reasoning comes first and counts against the same cap: it can leave no room for an answer
    thinking = await SimulatedModel(O3, time_scale=0).request(
        dataclasses.replace(request, max_output_tokens=30)
    )
    assert (thinking.text, thinking.finish_reason) == ("", "length")
    assert thinking.usage.reasoning_tokens == thinking.usage.output_tokens == 30


async def test_a_prompt_over_the_context_window_is_refused() -> None:
    model = SimulatedModel(MINI, context_window=50, time_scale=0)
    with pytest.raises(ContextWindowExceededError, match="context window of 50") as caught:
        await model.request(_ask("word " * 100))
    assert caught.value.model == MINI
    assert model.calls == 1
    assert (await model.request(_ask("short"))).finish_reason == "stop"


async def test_tools_are_counted_but_never_called() -> None:
    tool = ToolDefinition("search", "Search the web.", {"type": "object", "properties": {}})
    request = _ask("Find sources.", tools=(tool,))
    response = await SimulatedModel(MINI, time_scale=0).request(request)
    assert (response.tool_calls, response.finish_reason) == ((), "stop")
    assert response.usage.input_tokens == count_messages(request.messages, MINI, (tool,))


async def test_the_call_sleeps_the_scaled_latency_and_reports_the_simulated_one() -> None:
    model = SimulatedModel(O3, time_scale=0.01)
    request = _ask("Research customers of the home battery market.")
    expected = model.expected_latency(request)
    assert expected > 5  # o3: seconds of simulated thinking
    started = time.perf_counter()
    response = await model.request(request)
    elapsed = time.perf_counter() - started
    assert response.latency == expected
    assert 0.9 * expected * 0.01 <= elapsed < expected * 0.5


async def test_on_text_streams_the_answer_in_order() -> None:
    if "on_text" not in {f.name for f in dataclasses.fields(ModelRequest)}:
        pytest.skip("ModelRequest has no on_text field yet (streaming lands separately)")
    for make in (
        lambda: _ask("Research customers of the home battery market."),
        lambda: _structured(Finding),
    ):
        deltas: list[tuple[float, str]] = []

        def record(delta: str, deltas: list[tuple[float, str]] = deltas) -> None:
            deltas.append((anyio.current_time(), delta))

        model = SimulatedModel(MINI, time_scale=0.05)
        started = anyio.current_time()
        response = await model.request(dataclasses.replace(make(), on_text=record))
        assert len(deltas) > 1
        assert "".join(delta for _, delta in deltas) == response.text
        plain = await SimulatedModel(MINI, time_scale=0).request(make())
        assert _fields(plain) == _fields(response)  # streaming changes nothing else
        times = [at for at, _ in deltas]
        assert times == sorted(times)
        # chunks arrive as the answer is produced: the last at the end, the first well before
        assert times[0] - started < 0.6 * (times[-1] - started)


# --- simulate(), configuration -----------------------------------------------------------------


def test_simulate_makes_a_twin_with_the_same_name_price_and_window() -> None:
    twin = simulate(LiteLLMModel(O3), seed=3, workers=["scout"], time_scale=0.5)
    assert (twin.name, twin.seed, twin.workers, twin.time_scale) == (O3, 3, ("scout",), 0.5)
    assert twin.price == LiteLLMModel(O3).price
    assert twin.context_window == LiteLLMModel(O3).context_window
    fake = FunctionModel(lambda request: "x", input_price=1.0, output_price=2.0, name="my/model")
    assert simulate(fake).price == Price(1.0, 2.0)
    assert simulate(MINI).profile == profile_for(MINI)
    assert SimulatedModel.simulated is True
    assert twin.simulated is True
    assert delegate.SimulatedModel is SimulatedModel
    with pytest.raises(ConfigError, match="simulate"):
        simulate(42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("model", "family"),
    [
        ("openai/gpt-4o-mini", "fast"),
        ("openai/gpt-4.1-nano", "fast"),
        ("anthropic/claude-haiku-4-5", "fast"),
        ("gemini/gemini-2.0-flash", "fast"),
        ("gemini/gemini-2.5-pro", "default"),  # "gemini" contains "mini": not a mini
        ("openai/gpt-4o", "default"),
        ("openai/o3", "reasoning"),
        ("anthropic/claude-opus-4-1", "reasoning"),
        ("deepseek/deepseek-reasoner", "reasoning"),
        ("openai/o4-mini", "quick reasoning"),
        ("openai/gpt-5-mini", "quick reasoning"),
    ],
)
def test_profiles_by_family(model: str, family: str) -> None:
    profile = profile_for(model)
    kinds = {
        "fast": lambda p: p.reasoning_share == 0 and p.tokens_per_second >= 100,
        "default": lambda p: p.reasoning_share == 0 and p.tokens_per_second < 100,
        "reasoning": lambda p: p.reasoning_share > 0 and p.tokens_per_second < 100,
        "quick reasoning": lambda p: p.reasoning_share > 0 and p.tokens_per_second >= 100,
    }
    check: Callable[[ModelProfile], bool] = kinds[family]
    assert check(profile), profile


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: SimulatedModel(""), "litellm string"),
        (lambda: SimulatedModel(MINI, time_scale=-1), "time_scale"),
        (lambda: SimulatedModel(MINI, workers="scout"), "list of worker names"),
        (lambda: SimulatedModel(MINI, seed=1.5), "seed"),
        (lambda: ModelProfile(0.5, 0.0, 100), "tokens_per_second"),
        (lambda: ModelProfile(0.5, 50.0, 100, reasoning_share=1.0), "reasoning_share"),
    ],
)
def test_bad_arguments_are_refused(make: Callable[[], object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make()


# --- whole runs --------------------------------------------------------------------------------


def _brief_graph(researcher: Agent, writer: Agent) -> TaskGraph:
    graph = TaskGraph()
    parts = [
        graph.add(f"part{n}", agent=researcher, prompt=f"Research angle {n} of {{{{ market }}}}.")
        for n in range(5)
    ]
    graph.add("brief", agent=writer, prompt="Write the brief on {{ market }}.", deps=parts)
    return graph


@pytest.mark.parametrize("usd", [1.0, 0.004, 0.0015])
async def test_a_simulated_run_keeps_its_usd_budget(usd: float) -> None:
    mini = SimulatedModel(MINI, time_scale=0)
    haiku = SimulatedModel("anthropic/claude-haiku-4-5", time_scale=0)
    graph = _brief_graph(
        Agent("researcher", mini, instructions="Five bullets."), Agent("writer", haiku)
    )
    result = await Orchestrator(memory=None).execute(
        graph, {"market": "home batteries"}, budget=Budget(usd=usd)
    )
    assert result.usage.cost_usd <= usd
    assert mini.calls == 5
    assert result.usage.by_model[MINI].cost_usd == pytest.approx(
        sum(result.tasks[f"part{n}"].usage.cost_usd for n in range(5))
    )
    if usd == 1.0:  # room for everything: the writer gets its full default allowance
        assert (result.status, haiku.calls, result.usage.refused) == ("succeeded", 1, 0)
        assert haiku.requests[0].max_output_tokens == 4096
    elif usd == 0.004:  # the writer's output is shrunk to the dollars left, and still fits
        assert (result.status, haiku.calls, result.usage.refused) == ("succeeded", 1, 0)
        allowance = haiku.requests[0].max_output_tokens
        assert allowance is not None
        assert allowance < 4096
        assert result.tasks["brief"].usage.output_tokens <= allowance
    else:  # not even the smallest answer fits: refused, never sent
        assert (result.status, haiku.calls, result.usage.refused) == ("partial", 0, 1)
        assert result.tasks["brief"].status == "failed"


async def test_a_run_with_an_unpriced_model_is_refused_under_a_usd_budget() -> None:
    local = SimulatedModel("local/mystery-model", time_scale=0)
    graph = TaskGraph()
    graph.add("only", agent=Agent("worker", local), prompt="Do it.")
    with pytest.raises(PriceUnknownError, match="local/mystery-model"):
        await Orchestrator(memory=None).execute(graph, budget=Budget(usd=1.0))
    assert local.calls == 0


async def test_simulated_runs_repeat_exactly_and_the_estimate_uses_the_profiles() -> None:
    async def run_once() -> tuple[Any, ...]:
        mini = SimulatedModel(MINI, time_scale=0)
        o3 = SimulatedModel(O3, time_scale=0)
        graph = _brief_graph(Agent("researcher", mini), Agent("writer", o3))
        orchestrator = Orchestrator(memory=None)
        estimate = orchestrator.estimate(graph, {"market": "home batteries"})
        result = await orchestrator.execute(graph, {"market": "home batteries"})
        outputs = {task_id: task.output for task_id, task in result.tasks.items()}
        return estimate, result.usage, outputs

    estimate, usage, outputs = await run_once()
    assert (estimate, usage, outputs) == await run_once()
    assert estimate.critical_path[-1] == "brief"
    assert estimate.tasks["brief"].seconds > max(
        estimate.tasks[f"part{n}"].seconds for n in range(5)
    )
    assert usage.calls == 6
    assert usage.reasoning_tokens > 0


# --- the models' pace ---------------------------------------------------------------------------


def _latency(model: SimulatedModel) -> float:
    """The simulated seconds of every call `model` received, computed again from the requests."""
    return sum(model.expected_latency(request) for request in model.requests)


async def test_the_pace_of_a_run_is_the_critical_path_of_its_simulated_calls() -> None:
    pace = SimulatedPace()
    # One model per task, so each task's simulated seconds can be computed on their own.
    models = {
        name: SimulatedModel(MINI, seed=n, time_scale=0, pace=pace)
        for n, name in enumerate(("a", "b", "c", "d", "e"))
    }
    models["c"] = SimulatedModel(O3, time_scale=0, pace=pace)  # a slow branch
    agents = {name: Agent(f"agent_{name}", model) for name, model in models.items()}
    graph = TaskGraph()
    a = graph.add("a", agent=agents["a"], prompt="Find the angles.")
    b = graph.add("b", agent=agents["b"], prompt="Dig into angle one.", deps=[a])
    c = graph.add("c", agent=agents["c"], prompt="Dig into angle two.", deps=[a])
    graph.add("d", agent=agents["d"], prompt="Combine.", deps=[b, c])
    graph.add("e", agent=agents["e"], prompt="An aside.")  # independent, short
    orchestrator = Orchestrator(memory=None, on_event=pace)

    result = await orchestrator.execute(graph)

    assert result.status == "succeeded"
    seconds = {name: _latency(model) for name, model in models.items()}
    assert all(model.calls == 1 for model in models.values())
    assert pace.tasks == pytest.approx(seconds)
    assert pace.calls == 5
    expected = max(seconds["a"] + max(seconds["b"], seconds["c"]) + seconds["d"], seconds["e"])
    assert pace.run_seconds(result) == pytest.approx(expected)
    assert seconds["c"] > seconds["b"]  # the o3 branch is the critical one
    # `after`: what a task waited for beyond its deps (a workflow's fan-out after its source).
    assert pace.run_seconds(result, after={"e": ["d"]}) == pytest.approx(
        seconds["a"] + seconds["c"] + seconds["d"] + seconds["e"]
    )


async def test_the_pace_of_a_planned_run_puts_the_plan_and_the_answer_on_the_path() -> None:
    pace = SimulatedPace()
    planner = SimulatedModel(O3, workers=["scout"], time_scale=0, pace=pace)
    scout = SimulatedModel(MINI, time_scale=0, pace=pace)
    orchestrator = Orchestrator(
        planner=Agent("planner", planner),
        workers=[Agent("scout", scout)],
        memory=None,
        on_event=pace,
    )

    result = await orchestrator.run("Should a small office switch to heat pumps?")

    assert result.status == "succeeded"
    plan_calls = [r for r in planner.requests if r.output_name == "Plan"]
    answers = [r for r in planner.requests if r.output_name != "Plan"]
    assert (len(plan_calls), len(answers)) == (1, 1)
    assert pace.plans == {1: pytest.approx(planner.expected_latency(plan_calls[0]))}
    assert pace.other == pytest.approx(planner.expected_latency(answers[0]))
    assert sum(pace.tasks.values()) == pytest.approx(_latency(scout))
    # The plan, then the tasks' critical path (the last task combines the others), the answer.
    tasks = [t.id for t in result.plans[0].tasks]
    parts = max(pace.tasks[t] for t in tasks[:-1])
    assert pace.run_seconds(result) == pytest.approx(
        pace.plans[1] + parts + pace.tasks[tasks[-1]] + pace.other
    )


async def test_a_run_whose_calls_were_all_refused_takes_no_time_at_the_models_pace() -> None:
    pace = SimulatedPace()
    model = SimulatedModel(MINI, time_scale=0, pace=pace)
    graph = TaskGraph()
    graph.add("only", agent=Agent("worker", model), prompt="Write a long report.")
    orchestrator = Orchestrator(memory=None, on_event=pace)

    result = await orchestrator.execute(graph, budget=Budget(usd=0.000001))

    assert (result.status, result.usage.calls, model.calls) == ("failed", 0, 0)
    assert pace.run_seconds(result) == 0
    assert pace.calls == 0
