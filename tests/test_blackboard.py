"""The blackboard: versioned, namespaced memory over a real Store, and the agents' memory tools."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from _backends import store_url  # noqa: F401 - a fixture, used by `store`

from delegate.agents.agent import Agent
from delegate.errors import ConfigError
from delegate.memory.blackboard import Memory, memory_tools, relevant
from delegate.memory.store import Store
from delegate.testing import ScriptedModel, tool_call

pytestmark = pytest.mark.anyio


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:  # noqa: F811 - the fixture imported above
    """A store on each backend of the matrix: a SQLite file and, when reachable, PostgreSQL."""
    opened = Store.open(store_url)
    try:
        yield opened
    finally:
        opened.close()


# --- put, get, history ---


async def test_put_get_and_history_keep_every_version(store: Store) -> None:
    memory = Memory(store, run_id="r1", workflow="research")

    first = await memory.put("findings/anyio", {"stars": 1}, tags=["github"], task_id="t1")
    second = await memory.put("findings/anyio", {"stars": 2}, task_id="t2")

    assert (first.namespace, first.key, first.version) == ("run:r1", "findings/anyio", 1)
    assert (first.run_id, first.task_id, first.tags) == ("r1", "t1", ["github"])
    assert second.version == 2
    assert await memory.get("findings/anyio") == {"stars": 2}
    history = await memory.history("findings/anyio")
    assert [(r.version, r.value, r.task_id) for r in history] == [
        (1, {"stars": 1}, "t1"),
        (2, {"stars": 2}, "t2"),
    ]


async def test_get_missing_key_is_none_and_history_empty(store: Store) -> None:
    memory = Memory(store, run_id="r1")
    assert await memory.get("nothing") is None
    assert await memory.get_record("nothing") is None
    assert await memory.history("nothing") == []


async def test_key_value_and_text_are_all_searchable(store: Store) -> None:
    memory = Memory(store, run_id="r1")
    plain = await memory.put("note", "use anyio")
    structured = await memory.put("data", {"library": "trio"})
    explicit = await memory.put("custom", [1, 2], text="two numbers")
    assert (plain.text, structured.text, explicit.text) == (None, None, "two numbers")
    assert [r.key for r in await memory.search("anyio")] == ["note"]
    assert [r.key for r in await memory.search("trio")] == ["data"]
    assert [r.key for r in await memory.search("numbers")] == ["custom"]
    assert [r.key for r in await memory.search("custom")] == ["custom"]


async def test_values_of_every_json_type_round_trip(store: Store) -> None:
    memory = Memory(store, run_id="r1")
    values: list[Any] = ["text", 42, 2.5, True, None, [1, "a", None], {"nested": {"x": [1.5]}}]
    for index, value in enumerate(values):
        await memory.put(f"k{index}", value)
    assert [await memory.get(f"k{index}") for index in range(len(values))] == values


async def test_an_in_process_store_behaves_the_same() -> None:
    store = Store.open(":memory:")
    try:
        run_a = Memory(store, run_id="a", workflow="w")
        run_b = Memory(store, run_id="b", workflow="w")
        await run_a.put("k", "first draft", tags=["draft"])
        await run_a.put("k", "second draft", tags=["draft"])
        await run_a.put("shared", "workflow notes", namespace="workflow")
        assert [r.value for r in await run_a.history("k")] == ["first draft", "second draft"]
        assert await run_b.get("k") is None
        assert await run_b.get("shared", namespace="workflow") == "workflow notes"
        assert [r.key for r in await run_a.search("draft", tags=["draft"])] == ["k"]
        assert [r.key for r in await run_b.search("draft notes")] == ["shared"]
        assert [r.key for r in await run_a.list("s", namespace="workflow")] == ["shared"]
    finally:
        store.close()


# --- namespaces ---


async def test_run_namespaces_are_isolated_workflow_and_global_are_shared(store: Store) -> None:
    run_a = Memory(store, run_id="a", workflow="research")
    run_b = Memory(store, run_id="b", workflow="research")
    other = Memory(store, run_id="c", workflow="other")

    await run_a.put("secret", "only for run a")
    await run_a.put("style", "short sentences", namespace="workflow")
    await run_a.put("motto", "be brief", namespace="global")

    assert await run_a.get("secret") == "only for run a"
    assert await run_b.get("secret") is None
    assert await run_b.list() == []
    assert await run_b.get("style", namespace="workflow") == "short sentences"
    assert await other.get("style", namespace="workflow") is None
    assert await other.get("motto", namespace="global") == "be brief"
    assert await run_b.search("only for run") == []
    assert [r.key for r in await run_a.search("only for run")] == ["secret"]
    assert [r.namespace for r in await run_b.search("short sentences")] == ["workflow:research"]
    assert [r.namespace for r in await other.search("brief")] == ["global"]


async def test_same_key_in_three_namespaces_holds_three_values(store: Store) -> None:
    memory = Memory(store, run_id="r1", workflow="w")
    await memory.put("k", "run value")
    await memory.put("k", "workflow value", namespace="workflow")
    await memory.put("k", "global value", namespace="global")
    assert await memory.get("k", namespace="run") == "run value"
    assert await memory.get("k", namespace="run:r1") == "run value"
    assert await memory.get("k", namespace="workflow:w") == "workflow value"
    assert await memory.get("k", namespace="global") == "global value"
    assert [len(await memory.history("k", namespace=n)) for n in ("run", "workflow", "global")] == [
        1,
        1,
        1,
    ]


async def test_default_namespace_is_the_most_specific(store: Store) -> None:
    assert Memory(store, run_id="r", workflow="w").default_namespace == "run:r"
    assert Memory(store, workflow="w").default_namespace == "workflow:w"
    assert Memory(store).default_namespace == "global"
    assert Memory(store, run_id="r", workflow="w").namespaces == {
        "run": "run:r",
        "workflow": "workflow:w",
        "global": "global",
    }
    bound = Memory(store).bind(run_id="r2", workflow="w")
    assert (bound.store, bound.default_namespace) == (store, "run:r2")
    record = await Memory(store, workflow="w").put("k", 1)
    assert (record.namespace, record.run_id) == ("workflow:w", None)


async def test_missing_namespaces_fail_closed(store: Store) -> None:
    memory = Memory(store)
    with pytest.raises(ConfigError, match=r"'run' needs a run.*Memory\(store, run_id=\.\.\.\)"):
        await memory.put("k", 1, namespace="run")
    with pytest.raises(ConfigError, match=r"'workflow' needs a workflow.*workflow=\.\.\."):
        await memory.get("k", namespace="workflow")
    with pytest.raises(ConfigError, match="'run' needs a run"):
        await memory.search("anything", namespace=["global", "run"])
    with pytest.raises(ConfigError, match="empty list of namespaces"):
        await Memory(store, run_id="r").search("anything", namespace=[])
    assert await memory.list(namespace="global") == []


@pytest.mark.parametrize(
    "namespace", ["", "has space", "x'; DROP TABLE memories; --", "a" * 201, "ünï", "a\x00b"]
)
async def test_invalid_namespaces_are_refused(store: Store, namespace: str) -> None:
    memory = Memory(store, run_id="r")
    with pytest.raises(ConfigError, match=r"namespace .* is not valid"):
        await memory.put("k", 1, namespace=namespace)
    with pytest.raises(ConfigError, match=r"namespace .* is not valid"):
        await memory.search("k", namespace=namespace)
    assert await memory.list() == []


@pytest.mark.parametrize("run_id", ["", "a b", "x'--", "r" * 197])
def test_invalid_run_ids_are_refused(store: Store, run_id: str) -> None:
    with pytest.raises(ConfigError, match=r"memory run_id .* is not valid"):
        Memory(store, run_id=run_id)


def test_longest_valid_run_id_makes_a_valid_namespace(store: Store) -> None:
    assert Memory(store, run_id="r" * 196).default_namespace == "run:" + "r" * 196


# --- search and list ---


async def test_search_finds_words_and_filters_by_tags(store: Store) -> None:
    memory = Memory(store, run_id="r1", workflow="w")
    await memory.put("anyio", "structured concurrency for python", tags=["python", "async"])
    await memory.put("trio", "structured concurrency pioneer", tags=["python"])
    await memory.put("tokio", "async runtime for rust", tags=["rust", "async"])
    await memory.put("unrelated", "gardening notes")

    found = await memory.search("structured concurrency")
    assert sorted(r.key for r in found) == ["anyio", "trio"]
    tagged = await memory.search("structured concurrency", tags=["async"])
    assert [r.key for r in tagged] == ["anyio"]
    assert [r.key for r in await memory.search("async", tags=["rust"])] == ["tokio"]
    assert await memory.search("gardening", tags=["python"]) == []
    assert len(await memory.search("structured concurrency", limit=1)) == 1


async def test_search_sees_only_the_latest_version(store: Store) -> None:
    memory = Memory(store, run_id="r1")
    await memory.put("status", "draft pending review")
    await memory.put("status", "published")
    assert await memory.search("pending") == []
    assert [(r.key, r.value, r.version) for r in await memory.search("published")] == [
        ("status", "published", 2)
    ]


async def test_search_text_is_data_not_syntax(store: Store) -> None:
    memory = Memory(store, run_id="r1")
    await memory.put("q", "quotes \"and\" stars * OR NEAR(x) -minus 'single'")
    for text in ['"and"', "stars *", "OR NEAR(x)", "-minus", "'single'", "x'); DROP TABLE x; --"]:
        await memory.search(text)  # must not raise
    assert await memory.get("q") == "quotes \"and\" stars * OR NEAR(x) -minus 'single'"


async def test_search_of_blank_text_without_tags_is_empty(store: Store) -> None:
    memory = Memory(store, run_id="r1")
    await memory.put("k", "value")
    assert await memory.search("   ") == []


async def test_search_argument_errors(store: Store) -> None:
    memory = Memory(store, run_id="r1")
    for limit in (0, -1, 1001, True):
        with pytest.raises(ConfigError, match="limit must be an int from 1 to 1000"):
            await memory.search("x", limit=limit)
    with pytest.raises(ConfigError, match=r"tags must be a list of str.*tags=\['python'\]"):
        await memory.search("x", tags="python")


async def test_list_with_prefix_returns_latest_versions(store: Store) -> None:
    memory = Memory(store, run_id="r1")
    await memory.put("findings/a", 1)
    await memory.put("findings/b", 2)
    await memory.put("findings/a", 3)
    await memory.put("notes/x", 4)
    await Memory(store, run_id="r2").put("findings/c", 5)

    listed = await memory.list("findings/")
    assert sorted((r.key, r.value, r.version) for r in listed) == [
        ("findings/a", 3, 2),
        ("findings/b", 2, 1),
    ]
    assert sorted(r.key for r in await memory.list()) == ["findings/a", "findings/b", "notes/x"]
    assert await memory.list("nothing/") == []


async def test_list_prefix_is_literal_not_a_pattern(store: Store) -> None:
    memory = Memory(store, run_id="r1")
    await memory.put("a_b", 1)
    await memory.put("axb", 2)
    await memory.put("a%c", 3)
    assert [r.key for r in await memory.list("a_")] == ["a_b"]
    assert [r.key for r in await memory.list("a%")] == ["a%c"]


# --- validation ---


@pytest.mark.parametrize("key", ["", "k" * 501, "a\nb", "a\x00b", "a\tb", "a\u2028b", 7])
async def test_invalid_keys_are_refused(store: Store, key: Any) -> None:
    memory = Memory(store, run_id="r1")
    message = r"memory key .* is not valid: use 1-500 printable characters \(no newlines"
    with pytest.raises(ConfigError, match=message):
        await memory.put(key, 1)
    with pytest.raises(ConfigError, match=message):
        await memory.get(key)
    with pytest.raises(ConfigError, match=message):
        await memory.history(key)
    assert await memory.list() == []


async def test_edge_keys_are_accepted(store: Store) -> None:
    memory = Memory(store, run_id="r1")
    for key in ("k" * 500, "x'); DROP TABLE memories; --", "ünïcødé 🚀", "a b/c:d"):
        await memory.put(key, key)
        assert await memory.get(key) == key


@pytest.mark.parametrize(
    "value", [object(), {1: "a"}, {"ok": [{2: "b"}]}, float("nan"), {"x": float("inf")}, {1, 2}]
)
async def test_non_json_values_are_refused_before_writing(store: Store, value: Any) -> None:
    memory = Memory(store, run_id="r1")
    with pytest.raises(ConfigError, match=r"memory 'k': .*(JSON|str keys only)"):
        await memory.put("k", value)
    assert await memory.history("k") == []


async def test_invalid_tags_are_refused(store: Store) -> None:
    memory = Memory(store, run_id="r1")
    with pytest.raises(ConfigError, match="tags must be a list of str"):
        await memory.put("k", 1, tags="one")
    with pytest.raises(ConfigError, match=r"wrap it: tags=\['one'\]"):
        await memory.search("x", tags="one")
    for tag in ("", "a\nb", "t" * 201, 3):
        with pytest.raises(ConfigError, match=r"memory tag .* is not valid: use 1-200 printable"):
            await memory.put("k", 1, tags=[tag])
    assert await memory.history("k") == []
    record = await memory.put("k", 1, tags=["a", "b", "a"])
    assert record.tags == ["a", "b"]


# --- tools ---


async def test_agent_remembers_then_recalls_through_tools(store: Store) -> None:
    memory = Memory(store, run_id="r1", workflow="w")
    model = ScriptedModel(
        [
            tool_call("remember", key="capital/fr", value="Paris", tags=["geo"]),
            tool_call("recall", key="capital/fr"),
            "The capital is Paris.",
        ]
    )
    agent = Agent("scout", model, tools=memory_tools(memory, task_id="t7"))

    result = await agent.run("Remember the capital of France, then recall it.")

    assert result.output == "The capital is Paris."
    assert model.calls == 3
    after_remember = model.requests[1].messages[-1]
    after_recall = model.requests[2].messages[-1]
    assert (after_remember["role"], after_remember["content"]) == (
        "tool",
        "remembered 'capital/fr' (version 1)",
    )
    assert (after_recall["role"], after_recall["content"]) == ("tool", "Paris")
    record = await memory.get_record("capital/fr")
    assert record is not None
    assert (record.namespace, record.value, record.tags, record.run_id, record.task_id) == (
        "run:r1",
        "Paris",
        ["geo"],
        "r1",
        "t7",
    )


async def test_remember_with_a_scope_reaches_later_runs_of_the_workflow(store: Store) -> None:
    first = Memory(store, run_id="r1", workflow="w")
    remember = memory_tools(first, task_id="t1")[0]
    shared = json.dumps({"key": "fact/a", "value": "A", "scope": "workflow"})
    assert await remember.call(shared) == (
        "remembered 'fact/a' (version 1) for later runs of this workflow"
    )
    own = json.dumps({"key": "fact/b", "value": "B"})
    assert await remember.call(own) == "remembered 'fact/b' (version 1)"
    recall = memory_tools(Memory(store, run_id="r2", workflow="w"))[1]
    assert await recall.call(json.dumps({"key": "fact/a"})) == "A"  # a later run of the workflow
    missing = await recall.call(json.dumps({"key": "fact/b"}))
    assert missing == "no memory under 'fact/b'"  # run 1's own
    lone = memory_tools(Memory(store, run_id="r3"))[0]  # a run outside any workflow
    answer = await lone.call(json.dumps({"key": "fact/c", "value": "C", "scope": "workflow"}))
    assert answer.startswith("not remembered: memory namespace 'workflow' needs a workflow")


async def test_tool_definitions_tell_the_model_what_they_do(store: Store) -> None:
    remember, recall, search_memory = memory_tools(Memory(store, run_id="r"))
    assert [t.name for t in (remember, recall, search_memory)] == [
        "remember",
        "recall",
        "search_memory",
    ]
    assert remember.description.startswith("Save a fact, result or note to the shared memory")
    assert recall.description.startswith("Read what the shared memory holds under an exact key")
    assert search_memory.description.startswith("Search the shared memory by words")
    remember_params = remember.definition.parameters
    assert remember_params["required"] == ["key", "value"]
    assert remember_params["properties"]["tags"]["type"] == "array"
    assert remember_params["properties"]["tags"]["items"] == {"type": "string"}
    assert "descriptive name" in remember_params["properties"]["key"]["description"]
    limit = search_memory.definition.parameters["properties"]["limit"]
    assert (limit["minimum"], limit["maximum"], limit["default"]) == (1, 20, 5)


async def test_recall_reads_run_then_workflow_then_global(store: Store) -> None:
    memory = Memory(store, run_id="r", workflow="w")
    _, recall, _ = memory_tools(memory)
    await memory.put("only-global", {"g": 1}, namespace="global")
    await memory.put("shadowed", "global", namespace="global")
    await memory.put("shadowed", "workflow", namespace="workflow")
    await memory.put("run-first", "global", namespace="global")
    await memory.put("run-first", "run")
    await memory.put("null", None)
    await memory.put("null", "global", namespace="global")

    assert await recall.call('{"key": "only-global"}') == '{"g": 1}'
    assert await recall.call('{"key": "shadowed"}') == "workflow"
    assert await recall.call('{"key": "run-first"}') == "run"
    assert await recall.call('{"key": "null"}') == "null"  # a stored None is a value, shown as JSON
    assert await recall.call('{"key": "missing"}') == "no memory under 'missing'"
    assert await Memory(store, run_id="other").get("run-first") is None


async def test_search_memory_tool_returns_readable_json(store: Store) -> None:
    memory = Memory(store, run_id="r", workflow="w")
    remember, _, search_memory = memory_tools(memory)
    await remember.call('{"key": "lib/anyio", "value": "anyio runs on asyncio and trio"}')
    await memory.put("lib/trio", "trio the async library", namespace="global", tags=["py"])
    await memory.put("big", "asyncio " + "x" * 2000, namespace="workflow")

    hits = json.loads(await search_memory.call('{"query": "trio", "limit": 5}'))
    assert sorted(hits, key=lambda h: h["key"]) == [
        {"key": "lib/anyio", "value": "anyio runs on asyncio and trio", "namespace": "run"},
        {
            "key": "lib/trio",
            "value": "trio the async library",
            "namespace": "global",
            "tags": ["py"],
        },
    ]
    big = json.loads(await search_memory.call('{"query": "asyncio", "limit": 5}'))
    preview = next(h for h in big if h["key"] == "big")["value"]
    assert preview.endswith("… (2008 characters; recall the key for all)")
    assert len(preview) < 700
    assert await search_memory.call('{"query": "zebra"}') == "no memories match 'zebra'"
    refused = await search_memory.call('{"query": "trio", "limit": 50}')
    assert refused.startswith("Error: arguments for tool 'search_memory' did not validate: limit")


async def test_tool_errors_come_back_to_the_model(store: Store) -> None:
    remember, recall, _ = memory_tools(Memory(store))
    bad_key = await remember.call(json.dumps({"key": "a\nb", "value": "v"}))
    assert bad_key == (
        "Error: MemoryInputError: memory key 'a\\nb' is not valid: use 1-500 printable "
        "characters (no newlines, tabs, control characters or lone surrogates)"
    )
    assert (await recall.call('{"key": ""}')).startswith(
        "Error: MemoryInputError: memory key '' is not valid"
    )
    # A memory with no run writes to the global namespace.
    assert await remember.call('{"key": "k", "value": "v"}') == "remembered 'k' (version 1)"
    assert await Memory(store).get("k", namespace="global") == "v"


# --- relevant ---


async def test_relevant_ranks_entries_of_every_namespace(store: Store) -> None:
    memory = Memory(store, run_id="r", workflow="w")
    await memory.put("pricing", "the pricing page lists three plans")
    await memory.put("competitors", "competitor pricing is lower", namespace="workflow")
    await memory.put("weather", "sunny", namespace="global")

    found = await relevant(memory, "pricing", limit=5)
    assert sorted((r.namespace, r.key) for r in found) == [
        ("run:r", "pricing"),
        ("workflow:w", "competitors"),
    ]
    assert len(await relevant(memory, "pricing", limit=1)) == 1
    assert await relevant(memory, "", limit=5) == []
