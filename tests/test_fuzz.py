"""Fuzzing the ways hostile input gets in: only delegate's own errors come out, nothing hangs.

The properties and strategies are in `_fuzz.py`; `benchmarks/fuzz.py` runs the same ones with many
more examples and reports counts, times and memory. Here each runs a few dozen examples (hypothesis
keeps the failing ones in its database, so a failure found once is tried first next time); the
suite's per-test timeout is the guard against a hang, and `test_hostile_inputs.py` pins each
bullet of issue 12 with exact expectations.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _fuzz import (
    cli_pairs,
    cli_property,
    count_texts,
    json_text,
    memory_calls,
    memory_property,
    plan_property,
    planner_answers,
    planner_property,
    plans,
    structured_answers,
    structured_property,
    template_property,
    templates,
    tokens_property,
    tool_arguments,
    tool_property,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from delegate.memory.blackboard import Memory
from delegate.memory.store import Store

# Examples are slow by design (each may run a render to the sandbox's limit), so no deadline.
FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@FUZZ
@given(templates)
def test_templates(text: str) -> None:
    template_property(text)


@FUZZ
@given(plans)
def test_plans(plan: dict[str, Any]) -> None:
    plan_property(plan)


@settings(FUZZ, max_examples=20)
@given(planner_answers, st.booleans())
def test_planner_answers(answer: str, stream: bool) -> None:
    planner_property(answer, stream)


@FUZZ
@given(tool_arguments)
def test_tool_arguments(arguments: str) -> None:
    tool_property(arguments)


@settings(FUZZ, max_examples=25)
@given(structured_answers)
def test_structured_outputs(text: str) -> None:
    structured_property(text)


@pytest.fixture(scope="module")
def memory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Memory]:
    store = Store.open(f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'memory.db'}")
    try:
        yield Memory(store, run_id="r1", workflow="w")
    finally:
        store.close()


@FUZZ
@given(memory_calls)
def test_memory_calls(memory: Memory, call: tuple[str, dict[str, Any]]) -> None:
    method, arguments = call
    memory_property(memory, method, arguments)


@settings(FUZZ, max_examples=20)
@given(pairs=cli_pairs, file_text=st.one_of(st.none(), json_text), prompt=templates)
def test_cli_arguments(
    pairs: list[str], file_text: str | None, prompt: str, tmp_path: Path
) -> None:
    cli_property(pairs, file_text, prompt, tmp_path)


@settings(FUZZ, max_examples=15)
@given(count_texts)
def test_token_counts(text: str) -> None:
    tokens_property(text)
