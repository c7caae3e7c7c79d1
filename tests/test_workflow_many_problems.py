"""A workflow file with thousands of problems is reported in linear time: each unknown key's
"did you mean" is computed once, and only for the first `_SUGGESTED_KEYS` of them."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import pytest

from delegate.errors import WorkflowError
from delegate.workflows import MAX_BYTES, load_workflow_text
from delegate.workflows.loader import _SUGGESTED_KEYS

BRIEF = (Path(__file__).resolve().parent.parent / "configs" / "market-brief.yaml").read_text()


@pytest.fixture
def suggestions(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The unknown keys the loader looked for a close allowed key for."""
    looked: list[str] = []
    close_matches = difflib.get_close_matches

    def counted(word: str, *args: Any, **kwargs: Any) -> list[str]:
        looked.append(word)
        return close_matches(word, *args, **kwargs)

    monkeypatch.setattr("delegate.workflows.loader.difflib.get_close_matches", counted)
    return looked


def problems(text: str) -> list[str]:
    with pytest.raises(WorkflowError) as caught:
        load_workflow_text(text, "many.yaml")
    return [f"{p.line}: {p.message}" for p in caught.value.problems]


def test_each_unknown_key_is_looked_up_once(suggestions: list[str]) -> None:
    found = problems(BRIEF + "descripton: x\nnmae: y\nzzz: 1\n")

    assert suggestions == ["descripton", "nmae", "zzz"]  # was twice each
    assert found == [
        "32: unknown key 'descripton' in the workflow; did you mean 'description'?",
        "33: unknown key 'nmae' in the workflow; did you mean 'name'?",
        "34: unknown key 'zzz' in the workflow; allowed keys: name, description, inputs, agents, "
        "budget, memory, prices, endpoints, mcp_servers, rate_limits, max_concurrency, output, "
        "routing, steps, planner, workers, goal, max_replans, max_tasks, synthesizer, judge_goal",
    ]


def test_a_misspelt_key_is_not_also_reported_missing(suggestions: list[str]) -> None:
    text = (
        "name: x\nagents:\n  a: {model: openai/gpt-4o-mini}\n"
        "steps:\n  - {id: s, agent: a, promt: hi}\n"
    )
    assert problems(text) == [
        "5: unknown key 'promt' in step 's'; did you mean 'prompt'?",
    ]
    assert suggestions == ["promt"]


@pytest.mark.parametrize("where", ["top", "agent"])
def test_45000_unknown_keys_are_all_reported_and_only_the_first_get_suggestions(
    suggestions: list[str], where: str
) -> None:
    if where == "top":
        text = BRIEF + "".join(f"xk{i:06d}: 1\n" for i in range(45_000))
        owner, first_line = "the workflow", 32
    else:
        keys = "".join(f"    xk{i:06d}: 1\n" for i in range(45_000))
        anchor = "    instructions: Answer in at most five bullet points.\n"
        text = BRIEF.replace(anchor, anchor + keys)
        owner, first_line = "agent 'scout'", 12
    assert len(text.encode()) <= MAX_BYTES

    found = problems(text)

    assert len(found) == 45_000
    assert len(suggestions) == _SUGGESTED_KEYS == 100
    assert found[0].startswith(f"{first_line}: unknown key 'xk000000' in {owner}; allowed keys: ")
    assert found[-1].startswith(
        f"{first_line + 44_999}: unknown key 'xk044999' in {owner}; allowed keys: "
    )
