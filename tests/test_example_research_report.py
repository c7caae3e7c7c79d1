"""The research-report example (examples/research_report/) runs end to end offline, with the fakes:
a report whose every section cites corpus files listed under Sources, a budget that holds, and a
second run that reuses what the first one learned."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "examples") not in sys.path:
    sys.path.append(str(ROOT / "examples"))

from research_report import main as app  # noqa: E402
from research_report import offline  # noqa: E402
from research_report.corpus import CORPUS_DIR, Corpus, citations, corpus_tools  # noqa: E402
from research_report.report import audit  # noqa: E402
from research_report.team import Finding, Report, Section  # noqa: E402

from delegate.memory import Memory, MemoryRecord, Store  # noqa: E402

FIRST = "LFP vs NMC for home storage"
SECOND = "Fire safety of home batteries"
WORKFLOW = "research-report-offline"


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[offline.OfflineModels]:
    """The offline models of every run, in order, to look at what each model was sent."""
    runs: list[offline.OfflineModels] = []
    real = offline.offline_models

    def recording(*args: Any, **kwargs: Any) -> offline.OfflineModels:
        models = real(*args, **kwargs)
        runs.append(models)
        return models

    monkeypatch.setattr(offline, "offline_models", recording)
    return runs


def _report_sections(out: str) -> dict[str, str]:
    """The printed report's sections, heading → text, from the title to the citation check."""
    report = out[out.index("\n# ") + 1 : out.index("\ncitations:")]
    parts = re.split(r"^## (.+)$", report, flags=re.MULTILINE)
    return {heading: text.strip() for heading, text in zip(parts[1::2], parts[2::2], strict=True)}


def _assert_budget_held(result: Any, out: str, usd: float = 0.10) -> None:
    assert result.usage.cost_usd <= usd
    assert result.usage.refused == 0
    assert re.search(r"^budget: \$\d\.\d{4} of \$0\.10, .* — held \(0 calls refused\)$", out, re.M)


def test_a_run_writes_a_report_whose_sections_cite_corpus_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], built: list[offline.OfflineModels]
) -> None:
    result = app.main([FIRST, "--db", str(tmp_path / "runs.db")])
    out = capsys.readouterr().out

    assert result.status == "succeeded"
    assert isinstance(result.output, Report)
    assert [t.id for t in result.plans[0].tasks] == ["chemistry", "lifetime", "safety", "cost"]
    sections = _report_sections(out)
    assert list(sections) == [
        "Summary",
        "Chemistry and energy density",
        "Cycle life and degradation",
        "Thermal runaway and chemistry",
        "Cost",
        "Sources",
    ]
    body = {heading: text for heading, text in sections.items() if heading != "Sources"}
    for heading, text in body.items():
        cited = citations(text)
        assert cited, f"section {heading!r} cites nothing"
        assert all((CORPUS_DIR / file).is_file() for file in cited), cited
    # Sources lists exactly the files cited, in order of first citation, each with its title.
    corpus = Corpus.load()
    cited_in_order = citations(" ".join(body.values()))
    assert sections["Sources"].splitlines() == [
        f"- [{file}] {corpus.title(file)}" for file in cited_in_order
    ]
    assert result.output.sources == cited_in_order
    assert "citations: 5 files cited, all in the corpus and all listed under Sources" in out
    # Each question was researched: search, read, remember, answer; nothing came from memory.
    for task in result.tasks.values():
        assert isinstance(task.output, Finding)
        assert (task.status, task.usage.calls, task.output.from_memory) == ("succeeded", 4, [])
    [models] = built
    assert "## Relevant memory" not in models.planner.requests[0].messages[0]["content"]
    assert "memory shown to the planner: none" in out


def test_the_cost_table_compares_with_the_planner_alone_and_the_budget_holds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = app.main([FIRST, "--db", str(tmp_path / "runs.db")])
    out = capsys.readouterr().out

    usage = result.usage
    assert set(usage.by_role) == {"planner", "workers", "synthesizer"}
    assert [usage.by_role[r].calls for r in ("planner", "workers", "synthesizer")] == [1, 16, 1]
    assert usage.by_model.keys() == {"openai/o4-mini", "openai/gpt-4o-mini"}
    assert usage.planner_only_usd is not None
    assert usage.planner_only_usd > 3 * usage.cost_usd  # the mini workers are most of the tokens
    for role, model in (
        ("planner", "openai/o4-mini"),
        ("workers", "openai/gpt-4o-mini"),
        ("synthesizer", "openai/gpt-4o-mini"),
    ):
        row = re.search(rf"^\s+{role}\s+{re.escape(model)}\s+(\d+)\s", out, re.MULTILINE)
        assert row is not None, role
        assert int(row.group(1)) == usage.by_role[role].calls
    assert f"${usage.cost_usd:.4f}" in out
    saving = 1 - usage.cost_usd / usage.planner_only_usd
    assert (
        f"planner_only_usd: ${usage.planner_only_usd:.4f} — the same tokens on openai/o4-mini "
        f"alone; planner + mini workers saved {saving:.0%}"
    ) in out
    _assert_budget_held(result, out)


def test_a_second_run_reuses_what_the_first_learned(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], built: list[offline.OfflineModels]
) -> None:
    db = str(tmp_path / "runs.db")
    first = app.main([FIRST, "--db", db])
    first_out = capsys.readouterr().out
    learned = first.tasks["safety"].output
    assert isinstance(learned, Finding)

    # During the first run, the safety researcher saved its finding with remember(scope=
    # "workflow"), and the tool put it in the workflow's memory...
    [*_, last] = [
        r for r in built[0].researcher.requests if "`finding/safety`" in r.messages[1]["content"]
    ]
    remembered = [
        (json.loads(call["function"]["arguments"]), last.messages[n + 1]["content"])
        for n, message in enumerate(last.messages)
        for call in message.get("tool_calls", [])
        if call["function"]["name"] == "remember"
    ]
    [(arguments, answer)] = remembered
    assert (arguments["key"], arguments["value"], arguments["scope"]) == (
        "finding/safety",
        learned.answer,
        "workflow",
    )
    assert answer == "remembered 'finding/safety' (version 1) for later runs of this workflow"

    # ...where it is stored once, by that task of that run (nothing is copied after the run),
    # and not in the run's own namespace.
    async def stored() -> tuple[list[MemoryRecord], list[MemoryRecord]]:
        with Store.open(db) as store:
            memory = Memory(store, run_id=first.run_id, workflow=WORKFLOW)
            history = await memory.history("finding/safety", namespace="workflow")
            return history, await memory.list("finding/", namespace="run")

    [record], in_run = anyio.run(stored)
    assert record.namespace == f"workflow:{WORKFLOW}"
    assert (record.value, record.run_id, record.task_id) == (learned.answer, first.run_id, "safety")
    assert in_run == []
    saved = first_out.split(f"saved for later runs ({WORKFLOW}):\n", 1)[1].split("\n\n", 1)[0]
    assert [line.split(" (", 1)[0].strip() for line in saved.splitlines()] == [
        "finding/chemistry",
        "finding/cost",
        "finding/lifetime",
        "finding/safety",
    ]
    assert f"  finding/safety (run {first.run_id[:8]}, task safety): " in saved

    second = app.main([SECOND, "--db", db])
    out = capsys.readouterr().out

    # The planner of the second run was shown it, and told the researcher to recall it...
    planner_prompt = built[1].planner.requests[0].messages[0]["content"]
    assert "## Relevant memory" in planner_prompt
    assert f"- finding/safety: {learned.answer[:120]}" in planner_prompt
    [safety] = [t for t in second.plans[0].tasks if t.id == "safety"]
    assert "memory already holds `finding/safety`" in safety.instructions
    # ...which answered from memory in two calls (recall, answer) instead of four.
    reused = second.tasks["safety"]
    assert isinstance(reused.output, Finding)
    assert reused.output.from_memory == ["finding/safety"]
    assert reused.output.answer == learned.answer
    assert (first.tasks["safety"].usage.calls, reused.usage.calls) == (4, 2)
    recall_requests = [
        r for r in built[1].researcher.requests if "`finding/safety`" in r.messages[1]["content"]
    ]
    tools_called = [
        call["function"]["name"]
        for r in recall_requests
        for m in r.messages
        for call in m.get("tool_calls", [])
    ]
    assert set(tools_called) == {"recall"}
    # The new questions were researched; everything is reported.
    assert [t.output.from_memory for t in second.tasks.values() if t.id != "safety"] == [[]] * 3
    assert f"  finding/safety (run {first.run_id[:8]}, task safety): " in out
    assert "memory reused by the researchers: finding/safety" in out
    saved = out.split(f"saved for later runs ({WORKFLOW}):\n", 1)[1].split("\n\n", 1)[0]
    assert [line.split(" (", 1)[0].strip() for line in saved.splitlines()] == [
        "finding/codes",
        "finding/emergency",
        "finding/placement",
    ]
    assert "Thermal runaway and chemistry" in _report_sections(out)
    _assert_budget_held(second, out)


def test_a_budget_too_small_refuses_calls_and_is_never_exceeded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = app.main([FIRST, "--db", str(tmp_path / "runs.db"), "--budget-usd", "0.006"])
    out = capsys.readouterr().out

    assert result.status != "succeeded"
    assert result.output is None
    assert result.usage.cost_usd <= 0.006
    assert result.usage.refused > 0
    assert f"— held ({result.usage.refused} calls refused because they did not fit" in out
    assert "no report: the run " in out


def test_simulated_run_prices_the_same_team_within_its_budget(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [FIRST, "--simulate", "--time-scale", "0", "--db", str(tmp_path / "runs.db")]
    result = app.main(argv)
    out = capsys.readouterr().out

    assert result.status == "succeeded"
    assert isinstance(result.output, Report)
    assert result.usage.by_model.keys() == {"openai/o4-mini", "openai/gpt-4o-mini"}
    assert result.usage.planner_only_usd is not None
    assert result.usage.planner_only_usd > result.usage.cost_usd
    assert "SIMULATED — no model was called; prices are real, outputs are not" in out
    _assert_budget_held(result, out)


def test_live_without_an_api_key_stops_before_any_call(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(SystemExit) as stopped:
        app.main([FIRST, "--live", "--db", str(tmp_path / "runs.db")])

    assert stopped.value.code == 2
    assert "model openai/o4-mini needs OPENAI_API_KEY, which is not set" in capsys.readouterr().err
    assert not (tmp_path / "runs.db").exists()


def test_the_corpus_tools_search_and_read_only_the_corpus() -> None:
    search_corpus, read_document = corpus_tools(Corpus.load())

    hits = search_corpus("thermal runaway causes")
    assert hits[0]["file"] == "safety-thermal-runaway.md"
    assert set(hits[0]) == {"file", "title", "snippet", "score"}
    assert "thermal runaway" in hits[0]["snippet"].lower()
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    assert search_corpus("zeppelin") == []
    assert read_document("batteries-lfp.md").startswith("# Lithium iron phosphate (LFP) batteries")
    with pytest.raises(ValueError, match=r"no corpus document named '\.\./main\.py'"):
        read_document("../main.py")


def test_the_citation_check_finds_every_kind_of_problem() -> None:
    corpus = Corpus.load()
    report = Report(
        title="t",
        summary="LFP lasts. [batteries-lfp.md]",
        sections=[
            Section(heading="Made up", body="Zeppelins float. [zeppelins.md]"),
            Section(heading="Bare", body="No citation here."),
        ],
        sources=["batteries-lfp.md", "recycling.md"],
    )

    found = audit(report, corpus)

    assert not found.ok
    assert found.cited == ["batteries-lfp.md", "zeppelins.md"]
    assert found.unknown == ["zeppelins.md"]
    assert found.unlisted == ["zeppelins.md"]
    assert found.uncited == ["recycling.md"]
    assert found.bare_sections == ["Bare"]
    assert found.describe().startswith("citations: CHECK FAILED — not in the corpus: zeppelins.md")
