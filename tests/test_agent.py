"""Agent: requests, the tool loop, structured output with re-ask and fallback, the caller hook."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

from delegate.agents.agent import Agent, AgentResult, ModelCaller
from delegate.agents.models import Model, ModelRequest, ModelResponse, ToolCall, Usage
from delegate.agents.tools import Tool, tool
from delegate.errors import (
    BadRequestError,
    ConfigError,
    ContextWindowExceededError,
    OutputValidationError,
    RateLimitError,
    ToolLoopError,
)
from delegate.testing import FunctionModel, ScriptedModel, tool_call

pytestmark = pytest.mark.anyio


class Answer(BaseModel):
    answer: str
    score: int


class Other(BaseModel):
    value: str


def search(q: str) -> str:
    """Search for q.

    Args:
        q: the query.
    """
    return f"results for {q}"


def _usage(tokens: int, cost: float) -> Usage:
    return Usage(input_tokens=tokens, output_tokens=1, cost_usd=cost, calls=1)


class Recorder:
    """A ModelCaller that records every call and forwards it to the model."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, int]] = []
        self.responses: list[ModelResponse] = []

    async def __call__(self, agent: Agent, model: Model, request: ModelRequest) -> ModelResponse:
        self.seen.append((agent.name, model.name, len(request.messages)))
        response = await model.request(request)
        self.responses.append(response)
        return response


# --- plain text and requests ---


async def test_text_answer_and_first_request() -> None:
    model = ScriptedModel(["Paris"], input_price=1.0, output_price=2.0)
    agent = Agent(
        "geo",
        model,
        instructions="Answer briefly.",
        reasoning_effort="low",
        max_output_tokens=50,
        temperature=0.3,
    )
    result = await agent.run("Capital of France?")
    assert result.output == "Paris"
    assert result.text == "Paris"
    assert (result.calls, result.agent, result.model) == (1, "geo", "scripted")
    assert model.calls == 1
    request = model.requests[0]
    assert request.messages == [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Capital of France?"},
    ]
    assert request.output_schema is None
    assert request.tools == ()
    assert (request.max_output_tokens, request.reasoning_effort, request.temperature) == (
        50,
        "low",
        0.3,
    )
    assert result.usage.calls == 1
    assert result.usage.input_tokens > 0
    assert result.usage.cost_usd > 0


async def test_no_system_message_without_instructions() -> None:
    model = ScriptedModel(["hi"])
    await Agent("a", model).run("hello")
    assert model.requests[0].messages == [{"role": "user", "content": "hello"}]


async def test_prompt_must_be_a_string() -> None:
    agent = Agent("a", ScriptedModel(["x"]))
    with pytest.raises(ConfigError, match=r"Agent 'a': the prompt must be a str, got int"):
        await agent.run(42)  # type: ignore[arg-type]


# --- the tool loop ---


async def test_tool_loop_sends_tool_results_back() -> None:
    model = ScriptedModel([tool_call("search", q="x"), "final"])
    agent = Agent("researcher", model, instructions="Use tools.", tools=[search])
    result = await agent.run("find x")
    assert result.output == "final"
    assert result.calls == 2
    assert model.calls == 2
    call_id = tool_call("search", q="x").tool_calls[0].id
    assert model.requests[0].messages == [
        {"role": "system", "content": "Use tools."},
        {"role": "user", "content": "find x"},
    ]
    assert model.requests[1].messages == [
        {"role": "system", "content": "Use tools."},
        {"role": "user", "content": "find x"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": "search", "arguments": '{"q": "x"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call_id, "content": "results for x"},
    ]
    assert [r.tools for r in model.requests] == [(Tool(search).definition,)] * 2
    assert result.usage.calls == 2


async def test_tool_calls_of_one_round_run_concurrently_and_keep_order() -> None:
    ping_started, pong_started, pong_done = anyio.Event(), anyio.Event(), anyio.Event()

    async def ping() -> str:
        ping_started.set()
        await pong_started.wait()  # deadlocks unless pong runs at the same time
        await pong_done.wait()  # so ping finishes after pong
        return "ping result"

    async def pong() -> str:
        pong_started.set()
        await ping_started.wait()
        pong_done.set()
        return "pong result"

    both = ModelResponse(
        tool_calls=(ToolCall("c1", "ping", "{}"), ToolCall("c2", "pong", "{}")),
        finish_reason="tool_calls",
    )
    model = ScriptedModel([both, "done"])
    agent = Agent("a", model, tools=[ping, pong])
    with anyio.fail_after(5):
        result = await agent.run("go")
    assert result.output == "done"
    assert model.requests[1].messages[-3:] == [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "ping", "arguments": "{}"}},
                {"id": "c2", "type": "function", "function": {"name": "pong", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "ping result"},
        {"role": "tool", "tool_call_id": "c2", "content": "pong result"},
    ]


async def test_unknown_tool_is_reported_to_the_model() -> None:
    model = ScriptedModel([tool_call("serach", q="x"), "ok"])
    result = await Agent("a", model, tools=[search]).run("go")
    assert result.output == "ok"
    assert model.requests[1].messages[-1] == {
        "role": "tool",
        "tool_call_id": tool_call("serach", q="x").tool_calls[0].id,
        "content": "Error: unknown tool 'serach' (did you mean 'search'?); available tools: search",
    }


async def test_tool_call_without_tools_is_reported_to_the_model() -> None:
    model = ScriptedModel([tool_call("anything"), "ok"])
    await Agent("a", model).run("go")
    assert model.requests[1].messages[-1]["content"] == (
        "Error: unknown tool 'anything'; no tools are available, answer directly"
    )


async def test_bad_arguments_and_tool_errors_go_back_to_the_model() -> None:
    def divide(a: int, b: int) -> float:
        return a / b

    model = ScriptedModel([tool_call("divide", a=1), tool_call("divide", a=1, b=0), "gave up"])
    result = await Agent("a", model, tools=[divide]).run("1/0?")
    assert result.output == "gave up"
    assert model.calls == 3
    assert model.requests[1].messages[-1]["content"] == (
        "Error: arguments for tool 'divide' did not validate: b: Field required"
    )
    assert model.requests[2].messages[-1]["content"] == "Error: ZeroDivisionError: division by zero"


async def test_max_tool_rounds_allows_exactly_n_rounds() -> None:
    # max_tool_rounds=N: N rounds of tools run; the answer after the N-th round must be final.
    model = ScriptedModel([tool_call("search", q="1"), tool_call("search", q="2"), "done"])
    result = await Agent("a", model, tools=[search], max_tool_rounds=2).run("go")
    assert (result.output, result.calls, model.calls) == ("done", 3, 3)


async def test_tool_loop_error_after_n_rounds() -> None:
    runs: list[str] = []

    def probe(q: str) -> str:
        runs.append(q)
        return "again"

    model = FunctionModel(lambda request: tool_call("probe", q=str(len(request.messages))))
    agent = Agent("looper", model, tools=[probe], max_tool_rounds=2)
    with pytest.raises(ToolLoopError) as caught:
        await agent.run("go")
    # 2 rounds ran their tools; the 3rd call still asked for tools and was refused.
    assert model.calls == 3
    assert runs == ["1", "3"]
    assert str(caught.value) == (
        "Agent 'looper': the model still called tools (probe) after max_tool_rounds=2 rounds; "
        "raise max_tool_rounds (e.g. Agent(..., max_tool_rounds=4)) or say in the instructions "
        "when to stop calling tools and answer"
    )
    assert caught.value.model == "function"


async def test_tool_loop_error_escalates_to_fallback() -> None:
    looping = FunctionModel(lambda request: tool_call("search", q="x"), name="mini")
    strong = Agent("strong", ScriptedModel(["answer"], name="big"))
    agent = Agent("a", looping, tools=[search], max_tool_rounds=1, fallback=strong)
    result = await agent.run("go")
    assert (result.output, result.agent, result.model, result.calls) == (
        "answer",
        "strong",
        "big",
        3,
    )
    assert looping.calls == 2


# --- structured output ---


async def test_structured_output_valid_first_time() -> None:
    model = ScriptedModel([{"answer": "42", "score": 9}])
    result = await Agent("s", model, output_type=Answer).run("q")
    assert result.output == Answer(answer="42", score=9)
    assert result.text == '{"answer": "42", "score": 9}'
    assert model.calls == 1
    assert model.requests[0].output_schema == Answer.model_json_schema()
    assert model.requests[0].output_name == "Answer"


async def test_structured_output_prefers_parsed_output() -> None:
    response = ModelResponse(text="ignored", output={"answer": "a", "score": 1})
    result = await Agent("s", ScriptedModel([response]), output_type=Answer).run("q")
    assert result.output == Answer(answer="a", score=1)


async def test_invalid_then_valid_reasks_with_the_error() -> None:
    model = ScriptedModel([{"answer": "x", "score": "high"}, {"answer": "x", "score": 3}])
    result = await Agent("s", model, output_type=Answer).run("q")
    assert result.output == Answer(answer="x", score=3)
    assert result.calls == 2
    assert model.calls == 2
    assert model.requests[1].messages == [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": '{"answer": "x", "score": "high"}'},
        {
            "role": "user",
            "content": "Your answer did not validate as Answer: score: Input should be a valid "
            "integer, unable to parse string as an integer. Answer again with only a JSON object "
            "that matches the schema.",
        },
    ]


async def test_invalid_twice_raises_output_validation_error() -> None:
    model = ScriptedModel(["not json", {"answer": "x"}])
    with pytest.raises(OutputValidationError) as caught:
        await Agent("s", model, output_type=Answer).run("q")
    assert model.calls == 2
    assert str(caught.value) == (
        "Agent 's': the answer did not validate as Answer even after a re-ask: score: Field "
        "required; give the agent a fallback=Agent(...) with a stronger model, simplify the "
        "schema, or raise max_output_tokens"
    )
    assert caught.value.model == "scripted"
    assert type(caught.value.__cause__).__name__ == "ValidationError"


async def test_invalid_twice_escalates_to_fallback_and_sums_usage() -> None:
    mini = ScriptedModel(
        [
            ModelResponse(text="nope", usage=_usage(100, 0.001)),
            ModelResponse(text="still no", usage=_usage(200, 0.002)),
        ],
        name="mini",
    )
    big = ScriptedModel(
        [ModelResponse(text='{"answer": "y", "score": 1}', usage=_usage(1000, 0.5))], name="big"
    )
    strong = Agent("strong", big, output_type=Answer)
    recorder = Recorder()
    agent = Agent("worker", mini, output_type=Answer, fallback=strong)
    result = await agent.run("q", caller=recorder)
    assert result == AgentResult(
        output=Answer(answer="y", score=1),
        text='{"answer": "y", "score": 1}',
        usage=Usage(input_tokens=1300, output_tokens=3, cost_usd=0.503, calls=3),
        calls=3,
        agent="strong",
        model="big",
    )
    assert (mini.calls, big.calls) == (2, 1)
    # The fallback starts afresh with the same prompt, through the same caller.
    assert big.requests[0].messages == [{"role": "user", "content": "q"}]
    assert recorder.seen == [("worker", "mini", 1), ("worker", "mini", 3), ("strong", "big", 1)]


async def test_length_finish_reason_reasks_for_a_shorter_answer() -> None:
    long_text = "word " * 40
    long_answer = {"answer": long_text, "score": 1}
    model = ScriptedModel([long_answer, {"answer": "short", "score": 1}])
    agent = Agent("s", model, output_type=Answer, max_output_tokens=20)
    result = await agent.run("q")
    assert result.output == Answer(answer="short", score=1)
    assert model.calls == 2
    assert model.requests[0].max_output_tokens == 20
    reask = model.requests[1].messages[-1]
    assert reask["role"] == "user"
    assert reask["content"].startswith(
        "Your answer was cut off at max_output_tokens=20 before it was complete, so it did not "
        "validate as Answer: (root): Invalid JSON: EOF while parsing"
    )
    assert reask["content"].endswith(
        "Answer again with a shorter JSON object that matches the schema."
    )
    cut = model.requests[1].messages[-2]
    assert cut["role"] == "assistant"
    assert long_text not in cut["content"]  # the truncated text was sent back


async def test_transient_error_propagates_without_reask_or_fallback() -> None:
    model = ScriptedModel([RateLimitError("slow down", model="scripted", retry_after=2.0)])
    fallback_model = ScriptedModel(['{"answer": "y", "score": 1}'])
    fallback = Agent("strong", fallback_model, output_type=Answer)
    agent = Agent("s", model, output_type=Answer, fallback=fallback)
    with pytest.raises(RateLimitError) as caught:
        await agent.run("q")
    assert caught.value.retry_after == 2.0
    assert (model.calls, fallback_model.calls) == (1, 0)


async def test_context_window_exceeded_escalates_to_fallback() -> None:
    model = ScriptedModel([ContextWindowExceededError("too long", model="mini")])
    fallback = Agent("big-context", ScriptedModel(["fits"], name="long"))
    result = await Agent("s", model, fallback=fallback).run("a long prompt")
    assert (result.output, result.agent, result.model, result.calls) == (
        "fits",
        "big-context",
        "long",
        1,
    )


async def test_other_permanent_errors_do_not_escalate() -> None:
    fallback_model = ScriptedModel(["never"])
    agent = Agent(
        "s",
        ScriptedModel([BadRequestError("bad", model="m")]),
        fallback=Agent("f", fallback_model),
    )
    with pytest.raises(BadRequestError):
        await agent.run("q")
    assert fallback_model.calls == 0


async def test_caller_sees_every_call_in_order() -> None:
    model = ScriptedModel([tool_call("search", q="x"), "not json", '{"answer": "a", "score": 2}'])
    recorder = Recorder()
    agent = Agent("a", model, instructions="sys", tools=[search], output_type=Answer)
    result = await agent.run("q", caller=recorder)
    assert result.output == Answer(answer="a", score=2)
    # system+user; + assistant tool call + tool result; + bad answer + re-ask.
    assert recorder.seen == [("a", "scripted", 2), ("a", "scripted", 4), ("a", "scripted", 6)]
    assert sum((r.usage for r in recorder.responses), Usage()) == result.usage


async def test_caller_replaces_the_model_call() -> None:
    model = ScriptedModel([])  # never called: the caller answers instead

    async def canned(agent: Agent, model: Model, request: ModelRequest) -> ModelResponse:
        return ModelResponse(text=f"{agent.name} via caller", usage=_usage(5, 0.0))

    caller: ModelCaller = canned
    result = await Agent("a", model).run("q", caller=caller)
    assert (result.output, model.calls, result.usage.input_tokens) == ("a via caller", 0, 5)


def test_run_sync() -> None:
    model = ScriptedModel(["sync answer"])
    result = Agent("a", model).run_sync("q")
    assert (result.output, result.calls) == ("sync answer", 1)


async def test_run_sync_inside_an_event_loop_is_refused() -> None:
    agent = Agent("a", ScriptedModel(["x"]))
    with pytest.raises(ConfigError, match=r"run_sync\(\) was called inside a running event loop"):
        agent.run_sync("q")


# --- construction ---


def _fake() -> ScriptedModel:
    return ScriptedModel([])


def _untyped(q):  # type: ignore[no-untyped-def]
    return q


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": ""}, "Agent name '' is not valid; use a non-empty name of letters, digits"),
        ({"name": "my agent!"}, "Agent name 'my agent!' is not valid"),
        ({"name": 42}, "Agent name 42 is not valid"),
        (
            {"output_type": dict},
            "Agent 'x': output_type must be a pydantic BaseModel subclass, got dict; define "
            "class Answer(BaseModel): ... and pass output_type=Answer",
        ),
        (
            {"output_type": Answer(answer="a", score=1)},
            "Agent 'x': output_type must be a pydantic BaseModel subclass, got Answer "
            "Answer(answer='a', score=1)",
        ),
        (
            {"max_output_tokens": 0},
            "Agent 'x': max_output_tokens must be a positive int, got 0; e.g. max_output_tokens=4",
        ),
        ({"max_output_tokens": -5}, "Agent 'x': max_output_tokens must be a positive int, got -5"),
        ({"max_concurrency": 0}, "Agent 'x': max_concurrency must be a positive int, got 0"),
        ({"max_concurrency": -1}, "Agent 'x': max_concurrency must be a positive int, got -1"),
        ({"max_tool_rounds": 0}, "Agent 'x': max_tool_rounds must be a positive int, got 0"),
        ({"max_tool_rounds": True}, "Agent 'x': max_tool_rounds must be a positive int, got True"),
        (
            {"reasoning_effort": "extreme"},
            "Agent 'x': reasoning_effort must be one of 'minimal', 'low', 'medium', 'high' or "
            "None, got 'extreme'",
        ),
        ({"temperature": -0.1}, "Agent 'x': temperature must be a number ≥ 0 or None, got -0.1"),
        ({"instructions": None}, "Agent 'x': instructions must be a str, got NoneType None"),
        (
            {"fallback": "strong"},
            "Agent 'x': fallback must be an Agent, got str 'strong'; e.g. fallback=Agent(",
        ),
        (
            {"fallback": Agent("f", ScriptedModel([]), output_type=Other), "output_type": Answer},
            "Agent 'x': fallback 'f' has output_type Other, but this agent's is Answer; give the "
            "fallback the same output_type so its answer can stand in",
        ),
        (
            {"tools": [search, Tool(search)]},
            "Agent 'x': two tools are named 'search'; tool names must be unique, rename one with "
            "Tool(fn, name='...')",
        ),
        (
            {"tools": search},
            "Agent 'x': tools must be a list of functions, Tools or MCP servers, got function",
        ),
        (
            {"tools": [_untyped]},
            "Agent 'x': tool '_untyped' parameter 'q' has no type annotation; annotate it, e.g. "
            "q: str",
        ),
        (
            {"model": 42},
            "Agent 'x': model must be a litellm model string like 'openai/gpt-4o-mini' or a Model "
            "(e.g. delegate.testing.FunctionModel), got int 42",
        ),
        ({"model": "  "}, "Agent 'x': model is empty; pass a litellm model string like"),
    ],
)
def test_bad_configuration_raises_config_error(kwargs: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {"name": "x", "model": _fake(), **kwargs}
    with pytest.raises(ConfigError) as caught:
        Agent(**arguments)
    assert message in str(caught.value)


def test_attributes_and_repr() -> None:
    fallback = Agent("strong", ScriptedModel([], name="big"), output_type=Answer)
    agent = Agent(
        "worker",
        ScriptedModel([], name="mini"),
        description="does the work",
        tools=[search, tool(name="lookup")(search)],
        output_type=Answer,
        fallback=fallback,
        max_concurrency=3,
    )
    assert agent.name == "worker"
    assert agent.description == "does the work"
    assert [t.name for t in agent.tools] == ["search", "lookup"]
    assert (agent.max_concurrency, agent.max_tool_rounds, agent.max_output_tokens) == (3, 10, None)
    assert agent.fallback is fallback
    assert repr(agent) == (
        "Agent(name='worker', model='mini', tools=['search', 'lookup'], output_type=Answer, "
        "fallback='strong')"
    )
    assert repr(fallback) == "Agent(name='strong', model='big', output_type=Answer)"


def test_verify_and_votes_attributes_and_repr() -> None:
    judge = Agent("judge", ScriptedModel([], name="nano"))
    agent = Agent("worker", ScriptedModel([], name="mini"), verify=judge, votes=3)
    assert (agent.verify, agent.votes) == (judge, 3)
    assert repr(agent) == "Agent(name='worker', model='mini', verify='judge', votes=3)"
    plain = Agent("plain", ScriptedModel([]))
    assert (plain.verify, plain.votes) == (None, 1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"verify": "judge"},
            "Agent 'x': verify must be an Agent (a judge), got str 'judge'; e.g. "
            "verify=Agent('judge', 'openai/gpt-4o-mini')",
        ),
        (
            {"verify": Agent("judge", ScriptedModel([]), output_type=Other)},
            "Agent 'x': the judge 'judge' has output_type Other, but a judge answers with a "
            "delegate.Verdict; give the judge no output_type",
        ),
        ({"votes": 0}, "Agent 'x': votes must be a positive int, got 0; e.g. votes=4"),
        ({"votes": True}, "Agent 'x': votes must be a positive int, got True"),
    ],
)
def test_bad_verify_or_votes(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Agent("x", _fake(), **kwargs)
    assert message in str(caught.value)


async def test_run_overrides_the_output_cap_and_effort_for_one_run() -> None:
    model = ScriptedModel(["a", "b"])
    agent = Agent("a", model, max_output_tokens=500, reasoning_effort="high")
    await agent.run("q", max_output_tokens=40, reasoning_effort="minimal")
    await agent.run("q")
    sent = [(r.max_output_tokens, r.reasoning_effort) for r in model.requests]
    assert sent == [(40, "minimal"), (500, "high")]


async def test_run_overrides_reach_the_reask_and_the_fallback() -> None:
    model = ScriptedModel(["not json", "still not json"])
    strong_model = ScriptedModel([{"answer": "x", "score": 1}])
    strong = Agent("strong", strong_model, output_type=Answer, max_output_tokens=900)
    agent = Agent("a", model, output_type=Answer, fallback=strong)
    result = await agent.run("q", max_output_tokens=60, reasoning_effort="low")
    assert result.agent == "strong"
    sent = [(r.max_output_tokens, r.reasoning_effort) for r in model.requests]
    assert sent == [(60, "low"), (60, "low")]
    assert (
        strong_model.requests[0].max_output_tokens,
        strong_model.requests[0].reasoning_effort,
    ) == (
        60,
        "low",
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_output_tokens": 0}, "Agent 'a': run(): max_output_tokens must be a positive int"),
        ({"reasoning_effort": "max"}, "Agent 'a': run(): reasoning_effort must be one of"),
    ],
)
async def test_bad_run_overrides(kwargs: dict[str, Any], message: str) -> None:
    model = ScriptedModel(["never"])
    with pytest.raises(ConfigError) as caught:
        await Agent("a", model).run("q", **kwargs)
    assert message in str(caught.value)
    assert model.calls == 0


def test_with_output_type_keeps_the_name_model_and_budgets() -> None:
    from delegate.agents.agent import with_output_type
    from delegate.agents.limits import Budget

    strong = Agent("strong", ScriptedModel([]))
    judge = Agent(
        "judge", ScriptedModel([], name="nano"), fallback=strong, budget=Budget(calls=3), votes=2
    )
    typed = with_output_type(judge, Other)
    assert typed is not judge
    assert (typed.name, typed.model, typed.budget, typed.output_type) == (
        "judge",
        judge.model,
        judge.budget,
        Other,
    )
    assert (typed.votes, typed.verify) == (1, None)
    assert typed.fallback is not None
    assert (typed.fallback.name, typed.fallback.output_type) == ("strong", Other)
    assert judge.output_type is None  # the original is untouched
    assert with_output_type(judge, Other) is typed  # kept, not rebuilt


def test_model_string_resolves_without_importing_litellm() -> None:
    code = (
        "import sys\n"
        "from delegate.agents.agent import Agent\n"
        "from delegate.agents.models import LiteLLMModel\n"
        "agent = Agent('a', 'openai/gpt-4o-mini')\n"
        "assert isinstance(agent.model, LiteLLMModel), type(agent.model)\n"
        "assert 'litellm' not in sys.modules, 'litellm was imported'\n"
        "print(agent.model.name, repr(agent))\n"
    )
    env = {**os.environ, "OPENAI_API_KEY": "sk-test-secret-value"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "openai/gpt-4o-mini Agent(name='a', model='openai/gpt-4o-mini')"


async def test_tool_parameter_types_defined_in_a_function_resolve() -> None:
    # With `from __future__ import annotations` the hint is the string "Point"; it is found in
    # the frame that built the agent.
    class Point(BaseModel):
        x: int
        y: int

    def norm(p: Point) -> int:
        return abs(p.x) + abs(p.y)

    model = ScriptedModel([tool_call("norm", p={"x": 3, "y": -4}), "7"])
    agent = Agent("a", model, tools=[norm])
    assert agent.tools[0].definition.parameters["properties"] == {"p": {"$ref": "#/$defs/Point"}}
    await agent.run("go")
    assert model.requests[1].messages[-1]["content"] == "7"
