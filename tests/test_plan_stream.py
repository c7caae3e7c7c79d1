"""`PlanStream`: each task of a streamed plan comes out once, in order, as soon as it is complete,
however the text is split."""

from __future__ import annotations

import itertools
import json
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from delegate.orchestrator import plan_stream
from delegate.orchestrator.plan_stream import PlanStream

SEARCH: dict[str, Any] = {
    "id": "search",
    "agent": "researcher",
    "instructions": 'Find "sodium-ion" {cells} [2024] for C:\\data\\ — café, 日本, 😀',
    "deps": [],
    "expected_output": "A list: {name, price}",
}
SUMMARIZE: dict[str, Any] = {
    "expected_output": "}]},{[",  # keys in another order, brackets in strings
    "deps": ["search"],
    "instructions": 'Summarize {{ search }} in "three" lines\\',
    "agent": "writer",
    "id": "summarize",
    "output_schema": {
        "type": "object",
        "properties": {"lines": {"type": "array", "items": {"type": "string"}}},
        "required": ["lines"],
    },
}
REVIEW: dict[str, Any] = {
    "id": "review",
    "agent": "critic",
    "instructions": 'Check \u00e9 and \\u00e9, tabs\tand\nnewlines; quote \\" and \\\\',
    "deps": ["search", "summarize"],
    "meta": {"tasks": [{"id": "not-a-task"}], "empty": {}, "list": [[], [{}]]},
}
TASKS = [SEARCH, SUMMARIZE, REVIEW]


def _plans() -> list[str]:
    """The same three tasks written the ways a model writes them."""
    compact = json.dumps({"tasks": TASKS, "synthesis_note": "Merge {all} of it."})
    pretty = json.dumps(
        {"synthesis_note": 'Note "first" [then] tasks', "tasks": TASKS},
        indent=2,
        ensure_ascii=False,
    )
    escaped = json.dumps({"tasks": TASKS}, indent="\t", ensure_ascii=True)
    fenced = f"Here is the plan:\n```json\n{pretty}\n```\nDone {{really}}."
    spaced = json.dumps({"tasks": TASKS, "synthesis_note": ""}, separators=(" , ", " : "))
    return [compact, pretty, escaped, fenced, "\n  " + spaced + "\n"]


PLANS = _plans()


def _feed(pieces: list[str]) -> tuple[list[dict[str, Any]], PlanStream]:
    stream = PlanStream()
    found: list[dict[str, Any]] = []
    for piece in pieces:
        found.extend(stream.feed(piece))
    return found, stream


def _split(text: str, cuts: list[int]) -> list[str]:
    bounds = [0, *sorted(cuts), len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


@pytest.mark.parametrize("plan", PLANS, ids=["compact", "pretty", "escaped", "fenced", "spaced"])
def test_every_split_in_two_gives_the_same_tasks_once_in_order(plan: str) -> None:
    for cut in range(len(plan) + 1):
        found, stream = _feed([plan[:cut], plan[cut:]])
        assert found == TASKS, f"split at {cut}: {plan[:cut][-20:]!r} | {plan[cut:][:20]!r}"
        assert stream.errors == []
        assert stream.text == plan


@pytest.mark.parametrize("plan", PLANS, ids=["compact", "pretty", "escaped", "fenced", "spaced"])
def test_random_chunkings_give_the_same_tasks(plan: str) -> None:
    rng = random.Random(plan)
    for _ in range(200):
        cuts = rng.sample(range(1, len(plan)), rng.randint(1, 60))
        found, stream = _feed(_split(plan, cuts))
        assert found == TASKS, cuts
        assert stream.errors == []


@pytest.mark.parametrize("plan", PLANS, ids=["compact", "pretty", "escaped", "fenced", "spaced"])
def test_a_task_comes_out_with_its_closing_brace(plan: str) -> None:
    stream = PlanStream()
    emitted_at: list[int] = []
    for index, char in enumerate(plan):
        found = stream.feed(char)
        emitted_at.extend([index] * len(found))
    decoder = json.JSONDecoder()
    start = plan.index("{")
    _, end = decoder.raw_decode(plan, start)
    closing = [_closing_brace(plan, start, end, task) for task in TASKS]
    assert emitted_at == closing
    assert all(plan[index] == "}" for index in emitted_at)


def _closing_brace(plan: str, start: int, end: int, task: dict[str, Any]) -> int:
    """Where `task`'s object ends in `plan`: found by decoding each `{` inside the tasks array."""
    decoder = json.JSONDecoder()
    position = plan.index("[", plan.index('"tasks"', start))
    while position < end:
        position = plan.index("{", position)
        value, after = decoder.raw_decode(plan, position)
        if value == task:
            return after - 1
        position = after
    raise AssertionError(f"task {task['id']} not in the plan")


def test_one_character_at_a_time() -> None:
    for plan in PLANS:
        found, stream = _feed(list(plan))
        assert found == TASKS
        assert stream.errors == []


def test_empty_deltas_change_nothing() -> None:
    plan = PLANS[0]
    found, _ = _feed(["", plan[:50], "", "", plan[50:], ""])
    assert found == TASKS


def test_a_cut_off_plan_gives_the_tasks_finished_so_far() -> None:
    plan = PLANS[1]
    cut = plan.index('"id": "review"')
    found, stream = _feed([plan[:cut]])
    assert found == [SEARCH, SUMMARIZE]
    assert stream.errors == []
    assert stream.feed(plan[cut:]) == [REVIEW]


def test_only_elements_of_the_top_level_tasks_array_are_tasks() -> None:
    plan = json.dumps(
        {
            "notes": [{"id": "a"}, {"id": "b"}],
            "context": {"tasks": [{"id": "nested"}]},
            "title": "tasks",
            "tasks": [{"id": "real", "sub": {"tasks": [{"id": "inner"}]}}],
            "after": [{"id": "late"}],
        }
    )
    found, stream = _feed([plan])
    assert found == [{"id": "real", "sub": {"tasks": [{"id": "inner"}]}}]
    assert stream.errors == []


def test_an_escaped_member_name_still_names_the_tasks() -> None:
    found, _ = _feed(['{"\\u0074asks": [{"id": "a"}]}'])
    assert found == [{"id": "a"}]


def test_text_after_the_plan_is_ignored() -> None:
    found, stream = _feed(['{"tasks": [{"id": "a"}]}\n```\n', '{"tasks": [{"id": "b"}]}'])
    assert found == [{"id": "a"}]
    assert stream.errors == []


def test_nothing_comes_out_of_text_without_a_plan() -> None:
    found, stream = _feed(["I cannot plan this: ", "the goal is unclear [sorry]."])
    assert (found, stream.errors) == ([], [])


def test_a_task_that_is_not_valid_json_stops_the_stream_with_a_reason() -> None:
    # The whole plan will not parse either (the planner asks for a repair), so starting the
    # tasks after the broken one would only bind the repaired plan to them.
    plan = '{"tasks": [{"id": "a"}, {"id": "b", "agent": \'w\'}, {"id": "c"}]}'
    for size in (1, 3, len(plan)):
        found, stream = _feed([plan[i : i + size] for i in range(0, len(plan), size)])
        assert found == [{"id": "a"}]
        assert stream.errors == [
            "tasks[1] (id 'b') is not valid JSON (Expecting value: line 1 column 22 (char 21)); "
            'it was skipped: {"id": "b", "agent": \'w\'} (and no task after it is taken from the '
            "stream)"
        ]


@pytest.mark.parametrize(
    "broken",
    ['{"id": "c", "deps": [}', "{id: d}", '{"id": "e",}', '{"id": "\\ud800"}'],
    ids=["bracket", "bare key", "trailing comma", "lone surrogate"],
)
def test_any_broken_task_stops_the_stream(broken: str) -> None:
    plan = '{"tasks": [{"id": "a"}, ' + broken + ', {"id": "f"}]}'
    for cut in range(len(plan) + 1):
        found, stream = _feed([plan[:cut], plan[cut:]])
        assert found == [{"id": "a"}], cut
        [error] = stream.errors
        assert error.startswith("tasks[1]"), cut
        assert error.endswith("(and no task after it is taken from the stream)"), cut


def test_no_task_after_a_missing_comma_comes_out() -> None:
    # The partial parser reads the text as ending where the comma is missing.
    plan = '{"tasks": [{"id": "a"} {"id": "b"}, {"id": "c"}]}'
    found, stream = _feed([plan])
    assert (found, stream.errors) == ([], [])
    # Fed a character at a time, "a" was complete (and valid) at its brace.
    found, stream = _feed(list(plan))
    assert (found, stream.errors) == ([{"id": "a"}], [])


def test_a_plan_broken_before_its_tasks_streams_nothing() -> None:
    found, stream = _feed(['{"synthesis_note": \'x\', "tasks": [{"id": "a"}]}'])
    assert found == []
    assert stream.errors == [
        "the plan is not valid JSON (Expecting value: line 1 column 20 (char 19)); no task is "
        "taken from the stream"
    ]


def test_elements_that_are_not_objects_are_skipped_with_a_reason() -> None:
    plan = '{"tasks": ["search", {"id": "a"}, 42, [{"id": "x"}], true, null, -1.5e3, {"id": "b"}]}'
    expected_errors = [
        "tasks[0] is a string, not a task object; it was skipped",
        "tasks[2] is a bare value, not a task object; it was skipped",
        "tasks[3] is an array, not a task object; it was skipped",
        "tasks[4] is a bare value, not a task object; it was skipped",
        "tasks[5] is a bare value, not a task object; it was skipped",
        "tasks[6] is a bare value, not a task object; it was skipped",
    ]
    for cut in range(len(plan) + 1):
        found, stream = _feed([plan[:cut], plan[cut:]])
        assert found == [{"id": "a"}, {"id": "b"}], cut
        assert stream.errors == expected_errors, cut


def test_a_very_long_long_string_is_read_across_many_deltas() -> None:
    text = 'x\\"{' * 5000
    plan = json.dumps({"synthesis_note": text, "tasks": [{"id": "a", "instructions": text}]})
    found, _ = _feed([plan[i : i + 16] for i in range(0, len(plan), 16)])
    assert found == [{"id": "a", "instructions": text}]


# --- what a partial parser could take too early -------------------------------------------------

_SCHEMA = {"type": "object"}
_UNFINISHED: dict[str, tuple[str, str, dict[str, Any]]] = {
    # the text up to a point where the task is not complete yet, the rest, the task
    "a number that goes on": ('{"tasks": [{"id": "a", "n": 1', "2}]}", {"id": "a", "n": 12}),
    "a float's exponent": ('{"tasks": [{"id": "a", "n": 1.5', "e3}]}", {"id": "a", "n": 1500.0}),
    "a literal": ('{"tasks": [{"id": "a", "ok": tr', "ue}]}", {"id": "a", "ok": True}),
    "a member name": ('{"tasks": [{"id": "a", "de', 'ps": []}]}', {"id": "a", "deps": []}),
    "a string holding },": (
        '{"tasks": [{"id": "a", "note": "half}, {\\"id\\": \\"b\\"}',
        ' done"}]}',
        {"id": "a", "note": 'half}, {"id": "b"} done'},
    ),
    "an escaped quote": (
        '{"tasks": [{"id": "a", "note": "x\\',
        '"}"}]}',
        {"id": "a", "note": 'x"}'},
    ),
    "a nested object": (
        '{"tasks": [{"id": "a", "schema": {"type": "object"}',
        ', "deps": []}]}',
        {"id": "a", "schema": _SCHEMA, "deps": []},
    ),
    "a nested object and a comma": (
        '{"tasks": [{"id": "a", "schema": {"type": "object"},',
        ' "deps": []}]}',
        {"id": "a", "schema": _SCHEMA, "deps": []},
    ),
    "objects in an array": (
        '{"tasks": [{"id": "a", "list": [{"x": 1}, {"y": 2}',
        "]}]}",
        {"id": "a", "list": [{"x": 1}, {"y": 2}]},
    ),
    "a nested tasks array": (
        '{"tasks": [{"id": "a", "sub": {"tasks": [{"id": "inner"}',
        "]}}]}",
        {"id": "a", "sub": {"tasks": [{"id": "inner"}]}},
    ),
}


@pytest.mark.parametrize(("head", "rest", "task"), _UNFINISHED.values(), ids=list(_UNFINISHED))
def test_an_unfinished_task_is_not_taken(head: str, rest: str, task: dict[str, Any]) -> None:
    stream = PlanStream()
    assert stream.feed(head) == []
    assert stream.feed(rest) == [task]
    # Fed a character at a time, it comes out with its closing brace, not before.
    found, _ = _feed(list(head))
    assert found == []
    stream = PlanStream()
    emitted = [index for index, char in enumerate(head + rest) if stream.feed(char)]
    assert emitted == [len(head) + rest.rindex("}", 0, -2)]


def _counting_parser(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the length of every text the stream parses."""
    parsed: list[int] = []
    real = plan_stream.from_json

    def counting(text: str, **options: Any) -> Any:
        parsed.append(len(text))
        return real(text, **options)

    monkeypatch.setattr(plan_stream, "from_json", counting)
    return parsed


_HOSTILE = {
    "objects in a task": '{"tasks": [{"id": "a", "x": [' + "{}," * 100_000 + "{}]}",
    "braces in a string": '{"tasks": [{"id": "a", "x": "' + "}," * 150_000 + '"}',
    "objects before the tasks": '{"notes": [' + "{}," * 100_000 + '{}], "tasks": [{"id": "a"}',
}


@pytest.mark.parametrize("start", _HOSTILE.values(), ids=list(_HOSTILE))
def test_parsing_a_hostile_stream_is_bounded(start: str, monkeypatch: pytest.MonkeyPatch) -> None:
    parsed = _counting_parser(monkeypatch)
    tail = "".join(f', {{"id": "t{i}", "deps": ["a"]}}' for i in range(2000)) + "]}"
    text = start + tail
    found, stream = _feed([text[i : i + 16] for i in range(0, len(text), 16)])
    # At most 16 characters parsed per character fed, beyond the first million.
    assert sum(parsed) <= 16 * len(text) + 1_000_000
    assert len(parsed) <= (16 * len(text) + 1_000_000) // 64
    # Skipped places are caught up later: every task comes out once, in order.
    expected = [json.loads(start + "]}")["tasks"][0]] + [
        {"id": f"t{i}", "deps": ["a"]} for i in range(2000)
    ]
    assert found == expected
    assert stream.errors == []


def test_the_work_bound_never_delays_an_ordinary_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    parsed = _counting_parser(monkeypatch)
    tasks = [{**SUMMARIZE, "id": f"t{i}", "deps": [f"t{i - 1}"] if i else []} for i in range(200)]
    plan = json.dumps({"tasks": tasks, "synthesis_note": "Merge."}, indent=2)
    stream = PlanStream()
    emitted_at: list[int] = []
    for start in range(0, len(plan), 16):
        emitted_at.extend([start // 16] * len(stream.feed(plan[start : start + 16])))
    end = len(plan)
    assert emitted_at == [_closing_brace(plan, 0, end, task) // 16 for task in tasks]
    # A parse reads one task, not the plan so far.
    assert max(parsed) < 2 * len(json.dumps(SUMMARIZE, indent=2))


# --- property tests over generated plans -------------------------------------------------------

_TEXT = st.text(
    alphabet=st.sampled_from(list('ab {}[]",:\\/\n\t\u00e9\u65e5\U0001f600\x00\x1f')), max_size=12
)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _TEXT,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_TEXT, children, max_size=3),
    max_leaves=8,
)
_TASK = st.dictionaries(_TEXT, _JSON, max_size=4)


@st.composite
def _streamed_plans(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[str]]:
    tasks = draw(st.lists(_TASK, max_size=5))
    members: list[tuple[str, Any]] = [("tasks", tasks)]
    if draw(st.booleans()):
        members.insert(draw(st.integers(0, 1)), ("synthesis_note", draw(_TEXT)))
    if draw(st.booleans()):
        members.insert(draw(st.integers(0, len(members))), ("extra", [draw(_TASK)]))
    text = json.dumps(
        dict(members),
        ensure_ascii=draw(st.booleans()),
        indent=draw(st.sampled_from([None, 0, 2, "\t"])),
    )
    text = draw(st.sampled_from(["", "```json\n", "Plan:\n"])) + text
    cuts = draw(st.lists(st.integers(0, len(text)), max_size=40))
    return tasks, _split(text, cuts)


@settings(max_examples=300, deadline=None)
@given(_streamed_plans())
def test_generated_plans_split_anywhere(case: tuple[list[dict[str, Any]], list[str]]) -> None:
    tasks, pieces = case
    found, stream = _feed(pieces)
    assert found == tasks
    assert stream.errors == []
    assert stream.text == "".join(pieces)
