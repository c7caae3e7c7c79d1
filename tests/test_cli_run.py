"""The run-facing `delegate` commands: run, plan, runs, show, resume (`delegate.cli.run`,
`delegate.cli.runs`), and what they show (`delegate.cli._live`, `_summary`, `_stored`)."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from delegate import Agent, Orchestrator, TaskGraph
from delegate.agents.models import ModelRequest, Usage
from delegate.cli import main
from delegate.cli._format import SIMULATED_NOTE, format_usd
from delegate.cli._live import RunDisplay
from delegate.cli._summary import credentials_message, print_summary, result_json
from delegate.errors import PermanentModelError
from delegate.memory.records import RunRecord, TaskRecord
from delegate.memory.store import Store
from delegate.orchestrator.events import (
    PlanFinished,
    PlanStarted,
    RunFinished,
    RunStarted,
    SynthesisStarted,
    TaskCancelled,
    TaskFailed,
    TaskQueued,
    TaskRetried,
    TaskSkipped,
    TaskStarted,
    TaskSucceeded,
)
from delegate.orchestrator.run import RunResult
from delegate.testing import FunctionModel
from delegate.workflows import load_workflow

ROOT = Path(__file__).resolve().parent.parent
RESULT_KEYS = {
    "run_id",
    "workflow",
    "status",
    "simulated",
    "output",
    "error",
    "goal",
    "tasks",
    "usage",
    "plans",
    "pending",
    "started_at",
    "finished_at",
    "duration",
}
TASK_KEYS = {"status", "agent", "model", "attempts", "deps", "usage", "seconds", "output", "error"}
PLAN = {
    "tasks": [
        {"id": "facts", "agent": "scout", "instructions": "Do facts.", "deps": []},
        {"id": "history", "agent": "scout", "instructions": "Do history.", "deps": []},
        {
            "id": "report",
            "agent": "scout",
            "instructions": "Do report.",
            "deps": ["facts", "history"],
        },
    ],
    "synthesis_note": "Lead with the report.",
}


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), prog_name="delegate")


def cells(line: str) -> list[str]:
    """The cells of a plain table row (columns are separated by two spaces or more)."""
    return re.split(r"\s{2,}", line.strip())


def table(text: str, title: str) -> list[list[str]]:
    """The rows (header first) of the plain table under `title` in `text`."""
    lines = text.splitlines()
    start = lines.index(title) + 1
    rows = []
    for line in lines[start:]:
        if not line.strip():
            break
        if not set(line.strip()) <= {"-", " "}:
            rows.append(cells(line))
    return rows


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'runs.db'}"


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Local time is UTC, so the clock in progress lines is known."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def _worker(fail: frozenset[str] = frozenset(), long: bool = False) -> FunctionModel:
    def respond(request: ModelRequest) -> str:
        prompt = str(request.messages[-1]["content"])
        task = prompt.rsplit("Do ", 1)[-1].rstrip(".")
        if task in fail:
            raise PermanentModelError(f"cannot do {task}")
        return ("x" * 1200 + "END") if long else f"result of {task}"

    return FunctionModel(respond, name="mini", input_price=0.15, output_price=0.6)


def _static_run(
    url: str, run_id: str, *, fail: frozenset[str] = frozenset(), long: bool = False
) -> RunResult:
    scout = Agent("scout", _worker(fail, long))
    graph = TaskGraph()
    facts = graph.add("facts", agent=scout, prompt="Do facts.")
    graph.add("report", agent=scout, prompt="Do report.", deps=[facts])
    orch = Orchestrator(workers=[scout], memory=url)
    return orch.execute_sync(graph, run_id=run_id, workflow="market-brief")


def _planned_run(url: str, run_id: str) -> RunResult:
    def reason(request: ModelRequest) -> str:
        return json.dumps(PLAN) if request.output_name == "Plan" else "FINAL"

    planner = Agent(
        "planner", FunctionModel(reason, name="reasoner", input_price=10, output_price=40)
    )
    orch = Orchestrator(planner=planner, workers=[Agent("scout", _worker())], memory=url)
    return orch.run_sync("Write a short report on bees.", run_id=run_id, workflow="bees")


# -- runs -----------------------------------------------------------------------------------


def test_runs_lists_the_recent_runs_newest_first(url: str) -> None:
    first = _static_run(url, "run-1")
    second = _static_run(url, "run-2", fail=frozenset({"report"}))

    result = invoke("runs", "--db", url)

    assert result.exit_code == 0, result.output
    rows = [cells(line) for line in result.stdout.splitlines()]
    assert rows[0] == ["run", "workflow", "status", "created", "duration", "cost"]
    assert [row[:3] for row in rows[2:]] == [
        ["run-2", "market-brief", "partial"],
        ["run-1", "market-brief", "succeeded"],
    ]
    assert rows[2][5] == format_usd(second.usage.cost_usd)
    assert rows[3][5] == format_usd(first.usage.cost_usd)
    assert all(re.fullmatch(r"\d+\.\d s", row[4]) for row in rows[2:])

    limited = invoke("runs", "--db", url, "--limit", "1", "--json")
    assert limited.exit_code == 0, limited.output
    [run] = json.loads(limited.stdout)["runs"]
    assert run["run_id"] == "run-2"
    assert run["status"] == "partial"
    assert run["cost_usd"] == pytest.approx(second.usage.cost_usd)
    assert set(run) == {
        "run_id",
        "workflow",
        "goal",
        "status",
        "simulated",
        "created_at",
        "finished_at",
        "duration",
        "cost_usd",
    }
    assert run["simulated"] is False


def test_runs_of_an_empty_store_says_how_to_start_one(url: str) -> None:
    Store.open(url).close()
    result = invoke("runs", "--db", url)
    assert result.exit_code == 0, result.output
    assert result.stdout == "no runs in the store yet; start one with `delegate run FILE`\n"
    assert json.loads(invoke("runs", "--db", url, "--json").stdout) == {"runs": []}


def test_runs_without_a_default_store_yet_says_how_to_start_one_and_creates_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DELEGATE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DELEGATE_DB_URL", raising=False)
    result = invoke("runs")
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == "no runs in the store yet; start one with `delegate run FILE`\n"
    shown = invoke("show", "r1")
    assert shown.exit_code == 2
    assert shown.stderr == (
        f"Error: no run 'r1' in the store sqlite:///{tmp_path / 'home' / 'delegate.db'}; "
        "`delegate runs` lists the recent ones (--db URL reads another store)\n"
    )
    assert not (tmp_path / "home" / "delegate.db").exists()


def test_runs_reads_the_home_store_the_library_writes_with_memory_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DELEGATE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DELEGATE_DB_URL", raising=False)
    scout = Agent("scout", _worker())
    graph = TaskGraph()
    graph.add("facts", agent=scout, prompt="Do facts.")
    Orchestrator(workers=[scout], memory="home").execute_sync(graph, run_id="default-1")

    result = invoke("runs", "--json")

    assert result.exit_code == 0, result.output
    assert [run["run_id"] for run in json.loads(result.stdout)["runs"]] == ["default-1"]
    assert (tmp_path / "home" / "delegate.db").exists()


# -- show -----------------------------------------------------------------------------------


def test_show_prints_the_run_its_tasks_and_outputs(url: str) -> None:
    library = _static_run(url, "run-1")

    result = invoke("show", "run-1", "--db", url)

    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("run run-1: succeeded\nworkflow: market-brief\ncreated: ")
    rows = table(out, "tasks")
    assert rows[0] == ["task", "agent", "model", "status", "attempts", "tokens", "USD", "seconds"]
    for row, task in zip(rows[1:3], library.tasks.values(), strict=True):
        assert row[:5] == [task.id, "scout", "mini", "succeeded", "1"]
        assert row[5] == f"{task.usage.total_tokens:,}"
        assert row[6] == format_usd(task.usage.cost_usd)
    total = library.usage
    assert rows[3] == [
        "all tasks",
        "2",
        f"{total.input_tokens + total.output_tokens:,}",
        format_usd(total.cost_usd),
    ]
    assert "outputs:\n  facts:\n    result of facts\n  report:\n    result of report\n" in out
    assert out.endswith("output:\n    result of report\n")


def test_show_json_has_the_documented_keys_and_the_library_values(url: str) -> None:
    library = _static_run(url, "run-1", fail=frozenset({"report"}))

    result = invoke("show", "run-1", "--db", url, "--json")

    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert set(document) == {
        "run_id",
        "workflow",
        "status",
        "simulated",
        "goal",
        "inputs",
        "output",
        "error",
        "budget",
        "usage",
        "plans",
        "tasks",
        "approvals",
        "created_at",
        "finished_at",
        "duration",
    }
    assert (document["run_id"], document["status"]) == ("run-1", "partial")
    assert list(document["tasks"]) == ["facts", "report"]
    facts, report = document["tasks"]["facts"], document["tasks"]["report"]
    assert set(facts) == TASK_KEYS
    assert (facts["status"], facts["attempts"], facts["output"]) == (
        "succeeded",
        1,
        "result of facts",
    )
    assert facts["usage"] == library.tasks["facts"].usage.to_dict()
    assert report["status"] == "failed"
    assert report["error"] == library.tasks["report"].error
    assert report["deps"] == ["facts"]
    assert document["usage"]["cost_usd"] == pytest.approx(library.usage.cost_usd)


def test_show_lists_the_errors_of_a_partial_run(url: str) -> None:
    library = _static_run(url, "run-1", fail=frozenset({"report"}))
    result = invoke("show", "run-1", "--db", url)
    assert result.exit_code == 0, result.output
    error = library.tasks["report"].error
    assert error is not None
    assert "cannot do report" in error
    assert f"errors:\n  report (failed): {error}\n" in result.stdout


def test_show_cuts_long_outputs_unless_full(url: str) -> None:
    _static_run(url, "run-1", long=True)
    short = invoke("show", "run-1", "--db", url)
    full = invoke("show", "run-1", "--db", url, "--full")
    assert short.exit_code == full.exit_code == 0
    assert "    " + "x" * 500 + "… (703 more characters; --full shows all)\n" in short.stdout
    assert "END" not in short.stdout
    assert "    " + "x" * 1200 + "END\n" in full.stdout
    # JSON always has whole outputs.
    document = json.loads(invoke("show", "run-1", "--db", url, "--json").stdout)
    assert document["tasks"]["facts"]["output"] == "x" * 1200 + "END"


def test_show_of_a_planned_run_shows_its_plan_revisions(url: str) -> None:
    library = _planned_run(url, "planned-1")
    assert library.status == "succeeded"

    result = invoke("show", "planned-1", "--db", url)

    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "goal: Write a short report on bees.\n" in out
    cost = format_usd(library.plans[0].usage.cost_usd)
    assert (
        f"plans:\n  plan 1 (the goal): 3 tasks, 1 attempt, {cost}, complete\n"
        "    - facts (scout, after nothing): Do facts.\n"
        "    - history (scout, after nothing): Do history.\n"
        "    - report (scout, after facts, history): Do report.\n"
    ) in out
    assert out.endswith("output:\n    FINAL\n")

    document = json.loads(invoke("show", "planned-1", "--db", url, "--json").stdout)
    [plan] = document["plans"]
    assert (plan["revision"], plan["reason"], plan["complete"]) == (1, "goal", True)
    assert [task["id"] for task in plan["tasks"]] == ["facts", "history", "report"]
    assert document["goal"] == "Write a short report on bees."
    assert document["output"] == "FINAL"


def test_show_of_a_run_that_stopped_lists_the_tasks_never_run(url: str) -> None:
    graph = {
        "version": 1,
        "tasks": [
            {"id": "a", "agent": "scout", "deps": []},
            {"id": "b", "agent": "scout", "deps": ["a"]},
        ],
    }
    with Store.open(url) as store:
        store.create_run(RunRecord(id="stopped", graph=graph))
        done = TaskRecord(
            run_id="stopped",
            task_id="a",
            status="succeeded",
            attempts=1,
            agent="scout",
            model="mini",
            output="A",
            usage=Usage(input_tokens=10, output_tokens=5, cost_usd=0.25, calls=1).to_dict(),
        )
        store.write_batch("stopped", [done], [])

    result = invoke("show", "stopped", "--db", url)

    assert result.exit_code == 0, result.output
    rows = table(result.stdout, "tasks")
    assert rows[1] == ["a", "scout", "mini", "succeeded", "1", "15", "$0.25", "—"]
    assert rows[2] == ["b", "scout", "—", "not run", "0", "0", "$0", "—"]
    # Stored as running, but no process owns it: it was killed.
    assert result.stdout.splitlines()[:2] == [
        "run stopped: stale",
        "stale: stored as running, but no process owns it; resume it from Python: "
        "Orchestrator(...).resume('stopped')",
    ]
    document = json.loads(invoke("show", "stopped", "--db", url, "--json").stdout)
    assert document["status"] == "stale"
    assert document["tasks"]["b"]["status"] == "not run"
    assert document["tasks"]["b"]["deps"] == ["a"]


def test_show_of_an_unknown_run_is_exit_2_without_traceback(url: str) -> None:
    _static_run(url, "run-1")
    result = invoke("show", "nope", "--db", url)
    assert result.exit_code == 2
    assert "no run 'nope' in the store" in result.stderr
    assert "`delegate runs` lists the recent ones" in result.stderr
    assert "Traceback" not in result.output
    assert result.stdout == ""


def test_resume_of_an_unknown_run_is_exit_2(url: str) -> None:
    Store.open(url).close()
    result = invoke("resume", "nope", "--db", url)
    assert result.exit_code == 2
    assert "no run 'nope' in the store" in result.stderr
    assert "Traceback" not in result.output


# -- the progress display -------------------------------------------------------------------

T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC


def _events() -> list[Any]:
    usage = Usage(input_tokens=100, output_tokens=20, cost_usd=0.0004, calls=1)
    return [
        RunStarted(run_id="r1", tasks=3, at=T0),
        PlanStarted(run_id="r1", revision=1, reason="goal", at=T0),
        PlanFinished(run_id="r1", revision=1, tasks=3, attempts=2, usage=usage, at=T0 + 1),
        TaskQueued(run_id="r1", task_id="dig[0]", at=T0 + 1),
        TaskQueued(run_id="r1", task_id="dig[1]", at=T0 + 1),
        TaskStarted(run_id="r1", task_id="dig[0]", attempt=1, agent="scout", at=T0 + 1),
        TaskStarted(run_id="r1", task_id="dig[1]", attempt=1, agent="scout", at=T0 + 1.5),
        TaskRetried(
            run_id="r1", task_id="dig[1]", attempt=1, error="429 slow\ndown", delay=0.5, at=T0 + 2
        ),
        TaskSucceeded(
            run_id="r1",
            task_id="dig[0]",
            attempt=1,
            output="x",
            usage=usage,
            model="m",
            at=T0 + 2.2,
        ),
        TaskStarted(run_id="r1", task_id="dig[1]", attempt=2, agent="scout", at=T0 + 2.5),
        TaskFailed(run_id="r1", task_id="dig[1]", attempt=2, error="boom", usage=usage, at=T0 + 3),
        TaskSkipped(run_id="r1", task_id="brief", reason="dig[1] failed", at=T0 + 3),
        TaskCancelled(run_id="r1", task_id="extra", reason="deadline", at=T0 + 3),
        SynthesisStarted(run_id="r1", agent="planner", tasks=1, at=T0 + 3),
        RunFinished(
            run_id="r1",
            status="partial",
            usage=Usage(input_tokens=400, output_tokens=80, cost_usd=0.0016, calls=4),
            at=T0 + 4,
        ),
    ]


def test_plain_progress_is_one_line_per_event(utc: None) -> None:
    stream = io.StringIO()
    display = RunDisplay(stream, title="market-brief", run_id="r1", simulated=True)
    assert display.live is False  # a StringIO is no terminal
    display.start()
    for event in _events():
        display(event)
    display.stop()

    assert stream.getvalue().splitlines() == [
        "delegate · market-brief run r1",
        SIMULATED_NOTE,
        "22:13:20 run r1 started: 3 tasks",
        "22:13:20 plan 1 started (the goal)",
        "22:13:21 plan 1 ready: 3 tasks, 2 attempts ($0.0004)",
        "22:13:21 task dig[0] started (attempt 1, scout)",
        "22:13:21 task dig[1] started (attempt 1, scout)",
        "22:13:22 task dig[1] attempt 1 failed, retrying in 0.5 s: 429 slow down",
        "22:13:22 task dig[0] succeeded (1.2 s, $0.0004)",
        "22:13:22 task dig[1] started (attempt 2, scout)",
        "22:13:23 task dig[1] failed after 2 attempts (1.5 s, $0.0004): boom",
        "22:13:23 task brief skipped: dig[1] failed",
        "22:13:23 task extra cancelled: deadline",
        "22:13:23 writing the answer (planner, from 1 task result)",
        "22:13:24 run partial: 480 tokens in 4 calls, $0.0016",
    ]


def test_plain_progress_redacts_credentials_in_errors(utc: None) -> None:
    stream = io.StringIO()
    display = RunDisplay(stream, live=False)
    display(
        TaskFailed(
            run_id="r1",
            task_id="a",
            attempt=1,
            error="401 with Authorization: Bearer sk-proj-abcdef1234567890",
            usage=Usage(),
            at=T0,
        )
    )
    assert "sk-proj-abcdef1234567890" not in stream.getvalue()
    assert stream.getvalue().startswith("22:13:20 task a failed after 1 attempt ($0): 401 with")


def test_a_task_that_waits_for_approval_is_counted_and_said(utc: None) -> None:
    from delegate.orchestrator.events import TaskStarted, TaskWaiting

    stream = io.StringIO()
    display = RunDisplay(stream, live=False)
    display(TaskStarted(run_id="r1", task_id="a", attempt=1, agent="clerk", at=T0))
    display(TaskStarted(run_id="r1", task_id="b", attempt=1, agent="clerk", at=T0))
    display(
        TaskWaiting(
            run_id="r1", task_id="a", tools=("refund",), usage=Usage(cost_usd=0.5), at=T0 + 1
        )
    )

    assert display.status_lines()[0] == (
        "tasks: 0 queued · 1 running · 1 waiting · 0 succeeded · 0 failed · 0 skipped · 0 cancelled"
    )
    assert display.spent.cost_usd == 0.5
    assert stream.getvalue().splitlines()[-1] == (
        "22:13:21 task a waits for a human to approve refund (`delegate pending`)"
    )


def test_the_status_view_counts_tasks_tokens_spend_and_plans() -> None:
    display = RunDisplay(io.StringIO(), live=False, budget_usd=0.01)
    events = _events()
    for event in events[:7]:  # up to dig[1] started
        display(event)
    lines = display.status_lines()
    assert (
        lines[0] == "tasks: 0 queued · 2 running · 0 succeeded · 0 failed · 0 skipped · 0 cancelled"
    )
    assert lines[1] == "running: dig[0], dig[1]"
    assert lines[2].startswith("tokens: 120 · spend: $0.0004 of $0.01 (4%) · elapsed: ")
    assert lines[3:] == ["plan 1 ready: 3 tasks, 2 attempts ($0.0004)"]

    for event in events[7:14]:
        display(event)
    lines = display.status_lines()
    assert (
        lines[0] == "tasks: 0 queued · 0 running · 1 succeeded · 1 failed · 1 skipped · 1 cancelled"
    )
    assert lines[1].startswith("tokens: 360 · spend: $0.0012 of $0.01 (12%) · elapsed: ")
    assert lines[-1] == "writing the answer…"

    display(events[14])
    lines = display.status_lines()
    assert lines[1].startswith("tokens: 480 · spend: $0.0016 of $0.01 (16%)")
    assert lines[-1] == "run partial"


def test_the_live_view_draws_the_status_and_prints_failures(utc: None) -> None:
    stream = io.StringIO()
    display = RunDisplay(stream, live=True, title="market-brief", simulated=True)
    with display:
        for event in _events():
            display(event)
    out = stream.getvalue()
    assert "delegate · market-brief" in out
    assert SIMULATED_NOTE in out
    assert "tasks: 0 queued · 0 running · 1 succeeded · 1 failed · 1 skipped · 1 cancelled" in out
    assert "22:13:23 task dig[1] failed after 2 attempts (1.5 s, $0.0004): boom" in out
    assert "task dig[0] started" not in out  # the live view counts what is not notable


# -- the summary ----------------------------------------------------------------------------


def test_the_summary_tables_tasks_and_usage_by_role(url: str) -> None:
    result = _planned_run(url, "planned-1")
    stream = io.StringIO()

    print_summary(result, stream, budget_usd=1.0, simulated=True, fancy=False)

    out = stream.getvalue()
    assert out.startswith(f"\n{SIMULATED_NOTE}\ntasks\n")
    assert out.endswith(f"\n{SIMULATED_NOTE}\n")
    rows = table(out, "tasks")
    assert rows[0] == ["task", "agent", "model", "status", "attempts", "tokens", "USD", "seconds"]
    assert [row[:5] for row in rows[1:4]] == [
        ["facts", "scout", "mini", "succeeded", "1"],
        ["history", "scout", "mini", "succeeded", "1"],
        ["report", "scout", "mini", "succeeded", "1"],
    ]
    for row, task in zip(rows[1:4], result.tasks.values(), strict=True):
        assert row[5:7] == [f"{task.usage.total_tokens:,}", format_usd(task.usage.cost_usd)]
        assert re.fullmatch(r"\d+\.\d s", row[7])
    roles = table(out, "usage by role")
    assert roles[0] == ["role", "calls", "tokens", "USD"]
    by_role = result.usage.by_role
    assert roles[1:] == [
        [
            "planner",
            "2",
            f"{by_role['planner'].total_tokens:,}",
            format_usd(by_role["planner"].cost_usd),
        ],
        [
            "workers",
            "3",
            f"{by_role['workers'].total_tokens:,}",
            format_usd(by_role["workers"].cost_usd),
        ],
    ]
    planner_only = result.usage.planner_only_usd
    assert planner_only is not None
    assert planner_only > result.usage.cost_usd
    assert (
        f"planner_only_usd: {format_usd(planner_only)} — the same tokens at the planner's price"
        in out
    )
    assert f"run planned-1 succeeded in {result.duration:.1f} s: " in out
    assert f", {format_usd(result.usage.cost_usd)} of $1.00\n" in out


def test_the_summary_lists_failed_tasks_with_their_errors(url: str) -> None:
    result = _static_run(url, "run-1", fail=frozenset({"report"}))
    stream = io.StringIO()
    print_summary(result, stream, fancy=False)
    out = stream.getvalue()
    assert SIMULATED_NOTE not in out
    assert f"run run-1 partial in {result.duration:.1f} s" in out
    assert f"  report failed: {result.tasks['report'].error}\n" in out


def test_result_json_has_the_documented_keys(url: str) -> None:
    result = _planned_run(url, "planned-1")
    document = json.loads(json.dumps(result_json(result, simulated=True, workflow="bees")))
    assert set(document) == RESULT_KEYS
    assert (document["status"], document["simulated"], document["output"]) == (
        "succeeded",
        True,
        "FINAL",
    )
    assert set(document["tasks"]["facts"]) == TASK_KEYS
    assert document["tasks"]["report"]["deps"] == ["facts", "history"]
    assert document["usage"]["planner_only_usd"] == pytest.approx(result.usage.planner_only_usd)
    assert document["usage"]["by_role"]["planner"]["calls"] == 2
    assert [plan["revision"] for plan in document["plans"]] == [1]


# -- small parts ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (None, "—"),
        (0, "$0"),
        (0.0000018, "$0.0000018"),
        (0.00045, "$0.00045"),
        (0.0123, "$0.0123"),
        (0.5, "$0.50"),
        (1234.5, "$1,234.50"),
    ],
)
def test_format_usd_keeps_the_digits_that_matter(amount: float | None, text: str) -> None:
    assert format_usd(amount) == text


def test_the_credentials_message_names_each_variable_and_suggests_simulate() -> None:
    assert credentials_message({}) is None
    assert credentials_message({"openai/gpt-4o-mini": []}) is None
    assert credentials_message({"openai/gpt-4o-mini": ["OPENAI_API_KEY"]}) == (
        "model openai/gpt-4o-mini needs OPENAI_API_KEY, which is not set; export it, or try "
        "--simulate to see the run's graph, spend and critical path without calling a model"
    )
    two = credentials_message(
        {
            "openai/gpt-4o-mini": ["OPENAI_API_KEY"],
            "azure/gpt-4o": ["AZURE_API_KEY", "AZURE_API_BASE"],
        }
    )
    assert two == (
        "model openai/gpt-4o-mini needs OPENAI_API_KEY, which is not set; model azure/gpt-4o "
        "needs AZURE_API_KEY and AZURE_API_BASE, which are not set; export them, or try "
        "--simulate to see the run's graph, spend and critical path without calling a model"
    )


def test_help_lists_the_run_commands() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("run", "plan", "runs", "show", "resume"):
        assert re.search(rf"^  {command}\s", result.stdout, re.MULTILINE), command


# -- workflows, end to end ------------------------------------------------------------------

CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
_EXAMPLE = {
    "string": "home batteries",
    "integer": "3",
    "number": "0.5",
    "boolean": "true",
    "array": '["a", "b"]',
    "object": "{}",
}


def _input_args(path: Path) -> list[str]:
    """`-i` options for every required input of the workflow at `path`."""
    args = []
    for name, declared in load_workflow(path).spec.inputs.items():
        if declared.required:
            value = str(declared.enum[0]) if declared.enum else _EXAMPLE[declared.type]
            args += ["-i", f"{name}={value}"]
    return args


def test_there_are_configs_to_run() -> None:
    assert {path.name for path in CONFIGS} >= {
        "market-brief.yaml",
        "research-planner.yaml",
        "due-diligence.yaml",
    }


@pytest.mark.parametrize("config", CONFIGS, ids=lambda path: path.stem)
def test_every_config_runs_simulated(config: Path, url: str) -> None:
    args = ["run", str(config), *_input_args(config), "--simulate", "--time-scale", "0"]

    shown = invoke(*args, "--db", url, "--run-id", "shown")
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.strip()  # the output, and nothing else
    assert SIMULATED_NOTE not in shown.stdout
    assert shown.stderr.startswith(f"delegate · {config.stem} run shown\n{SIMULATED_NOTE}\n")
    assert "run shown succeeded in " in shown.stderr
    assert shown.stderr.endswith(f"{SIMULATED_NOTE}\n")

    as_json = invoke(*args, "--db", url, "--run-id", "as-json", "--json")
    assert as_json.exit_code == 0, as_json.output
    assert as_json.stderr == ""  # no progress with --json
    document = json.loads(as_json.stdout)
    assert set(document) == RESULT_KEYS
    assert (document["run_id"], document["status"], document["simulated"]) == (
        "as-json",
        "succeeded",
        True,
    )
    assert document["workflow"] == config.stem
    # A step whose `when` is false is skipped (due-diligence's deep dive, by default).
    assert {task["status"] for task in document["tasks"].values()} <= {"succeeded", "skipped"}
    assert document["usage"]["calls"] > 0
    assert document["usage"]["cost_usd"] > 0
    # The same seed gives the same run: the text output is the JSON's output.
    output = document["output"]
    assert shown.stdout == (output if isinstance(output, str) else json.dumps(output, indent=2)) + (
        "" if isinstance(output, str) and output.endswith("\n") else "\n"
    )

    stored = json.loads(invoke("show", "as-json", "--db", url, "--json").stdout)
    assert (stored["status"], stored["simulated"], stored["workflow"]) == (
        "succeeded",
        True,
        config.stem,
    )
    assert "(simulated)" in invoke("runs", "--db", url).stdout


def test_run_without_db_keeps_the_run_in_the_home_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The library keeps runs only where its user says; the command keeps every run in the home
    # store, where `runs`, `show` and `resume` find it without --db.
    monkeypatch.setenv("DELEGATE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DELEGATE_DB_URL", raising=False)
    config = ROOT / "configs" / "market-brief.yaml"
    args = ["run", str(config), *_input_args(config), "--simulate", "--time-scale", "0"]

    result = invoke(*args, "--run-id", "at-home", "--json")

    assert result.exit_code == 0, result.output
    home = tmp_path / "home" / "delegate.db"
    with Store.open(f"sqlite:///{home}") as store:
        assert [run.id for run in store.list_runs()] == ["at-home"]
    assert [run["run_id"] for run in json.loads(invoke("runs", "--json").stdout)["runs"]] == [
        "at-home"
    ]
    shown = json.loads(invoke("show", "at-home", "--json").stdout)
    assert (shown["run_id"], shown["status"]) == ("at-home", "succeeded")
    resumed = invoke("resume", "at-home")
    assert resumed.exit_code == 2
    assert resumed.stderr == (
        "Error: run 'at-home' already succeeded: there is nothing to resume; "
        "`delegate show at-home` shows it\n"
    )


@pytest.mark.parametrize("config", CONFIGS, ids=lambda path: path.stem)
def test_every_config_plans_without_running(
    config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DELEGATE_HOME", str(tmp_path))  # where a run would be stored
    args = ["plan", str(config), *_input_args(config), "--simulate"]

    text = invoke(*args)
    assert text.exit_code == 0, text.output
    assert text.stdout.startswith(f"{SIMULATED_NOTE}\n{config.stem}: ")
    assert ", nothing executed\n" in text.stdout
    assert " on the critical path: " in text.stdout

    result = invoke(*args, "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert set(document) == {"workflow", "simulated", "tasks", "estimate", "plan"}
    assert document["simulated"] is True
    estimate = document["estimate"]
    assert estimate["usd"] > 0
    assert estimate["seconds"] > 0
    ids = [task["id"] for task in document["tasks"]]
    assert set(estimate["critical_path"]) <= set(ids)
    assert estimate["critical_path"][-1] in ids
    if load_workflow(config).spec.mode == "planner":
        assert [task["id"] for task in document["plan"]["tasks"]] == ids
        assert document["plan"]["usage"]["calls"] == 1
        assert "plans:\n  plan 1 (the goal): " in text.stdout
    else:
        assert document["plan"] is None
    # Nothing ran: no run was stored.
    assert json.loads(invoke("runs", "--json").stdout) == {"runs": []}


def test_show_of_a_mixed_workflow_shows_the_plan_of_its_plan_step(url: str) -> None:
    config = str(ROOT / "configs" / "due-diligence.yaml")
    run = invoke(
        "run", config, "-i", "company=ACME", "-i", "depth=deep", "--simulate",
        "--time-scale", "0", "--db", url, "--run-id", "deep", "--json",
    )  # fmt: skip
    assert run.exit_code == 0, run.output
    tasks = json.loads(run.stdout)["tasks"]
    assert tasks["deep_dive"]["status"] == "succeeded"

    stored = json.loads(invoke("show", "deep", "--db", url, "--json").stdout)
    [plan] = stored["plans"]
    assert (plan["step"], plan["complete"]) == ("deep_dive", True)
    planned = [task["id"] for task in plan["tasks"]]
    assert planned
    assert all(tasks[task_id]["status"] == "succeeded" for task_id in planned)
    text = invoke("show", "deep", "--db", url).stdout
    cost = format_usd(plan["usage"]["cost_usd"])  # the planning's, also the row deep_dive.plan
    assert f"plans:\n  plan step deep_dive: {len(planned)} tasks, {cost}, complete\n" in text
    assert cost == format_usd(tasks["deep_dive.plan"]["usage"]["cost_usd"])
    for task in plan["tasks"]:
        assert f"    - {task['id']} ({task['agent']}, after " in text


@pytest.fixture
def no_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(name, raising=False)


def test_run_without_credentials_names_the_variables_and_suggests_simulate(
    no_keys: None, url: str
) -> None:
    config = ROOT / "configs" / "market-brief.yaml"
    result = invoke("run", str(config), "-i", "market=x", "--db", url)

    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == (
        "Error: model openai/gpt-4o-mini needs OPENAI_API_KEY, which is not set; model "
        "anthropic/claude-haiku-4-5 needs ANTHROPIC_API_KEY, which is not set; export them, or "
        "try --simulate to see the run's graph, spend and critical path without calling a "
        "model\n"
    )
    assert not Path(url.removeprefix("sqlite:///")).exists()  # nothing was stored


def test_run_checks_each_model_for_its_own_variable(
    no_keys: None, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-real")
    config = ROOT / "configs" / "market-brief.yaml"
    result = invoke("run", str(config), "-i", "market=x", "--db", url, "--json")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith(
        "Error: model anthropic/claude-haiku-4-5 needs ANTHROPIC_API_KEY, which is not set; "
        "export it, or try --simulate"
    )


def test_invalid_inputs_are_exit_2_with_the_remedy(url: str) -> None:
    config = str(ROOT / "configs" / "market-brief.yaml")
    missing = invoke("run", config, "--simulate", "--db", url)
    assert missing.exit_code == 2
    assert "input 'market' (The market to study) is required: pass -i market=..." in missing.stderr
    assert "Traceback" not in missing.output

    typo = invoke("run", config, "-i", "markt=x", "--simulate", "--db", url)
    assert typo.exit_code == 2
    assert "has no input 'markt'" in typo.stderr
    assert "did you mean 'market'?" in typo.stderr
    assert "Traceback" not in typo.output

    debug = invoke("--debug", "run", config, "--simulate", "--db", url)
    assert debug.exit_code == 2
    assert "Traceback" in debug.stderr


def test_an_invalid_workflow_file_is_exit_2_with_file_line_col(tmp_path: Path, url: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: bad\nagents:\n  a: {model: openai/gpt-4o-mini}\nsteps:\n"
        "  - id: one\n    agent: b\n    prompt: hi\n"
    )
    for command in (["run", "--db", url], ["plan"]):
        result = invoke(*command, str(bad), "--simulate")
        assert result.exit_code == 2, command
        assert f"{bad}:6:" in result.stderr
        assert "Traceback" not in result.output


def test_a_failed_run_is_exit_1_with_its_json(url: str) -> None:
    config = str(ROOT / "configs" / "market-brief.yaml")
    result = invoke(
        "run", config, "-i", "market=x", "--simulate", "--time-scale", "0", "--db", url,
        "--budget-usd", "0.000001", "--json",
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    document = json.loads(result.stdout)
    assert document["status"] == "failed"
    assert document["tasks"]["angles"]["status"] == "failed"
    refusal = document["tasks"]["angles"]["error"]
    assert "budget" in refusal
    assert document["usage"]["refused"] >= 1
    assert document["usage"]["calls"] == 0
    # The run's own reason: how many tasks failed, and the first one's error.
    assert document["error"] == f"1 of 3 tasks failed: task 'angles' failed: {refusal}"
    stored = json.loads(invoke("show", document["run_id"], "--db", url, "--json").stdout)
    assert stored["error"] == document["error"]

    shown = invoke(
        "run", config, "-i", "market=x", "--simulate", "--time-scale", "0", "--db", url,
        "--budget-usd", "0.000001",
    )  # fmt: skip
    assert shown.exit_code == 1
    assert shown.stdout == ""  # no output
    assert re.search(r"^run \w+ failed in ", shown.stderr, re.MULTILINE)
    assert "\nerror: 1 of 3 tasks failed: task 'angles' failed: budget of $0.000001 " in (
        shown.stderr
    )
    assert "  angles failed: " in shown.stderr
    # No call was made: the run takes no time at the models' pace (not wall time scaled up).
    assert "\nno model call was made: at the models' pace the run takes 0 s\n" in shown.stderr


def test_a_run_id_in_use_points_at_resume(url: str) -> None:
    config = str(ROOT / "configs" / "market-brief.yaml")
    args = ["run", config, "-i", "market=x", "--simulate", "--time-scale", "0", "--db", url]
    assert invoke(*args, "--run-id", "same").exit_code == 0
    again = invoke(*args, "--run-id", "same")
    assert again.exit_code == 2
    assert "run 'same' is already in the store; continue it with `delegate resume same`" in (
        again.stderr
    )
    finished = invoke("resume", "same", "--db", url)
    assert finished.exit_code == 2
    assert "run 'same' already succeeded: there is nothing to resume" in finished.stderr


def test_resume_needs_the_credentials_of_a_real_run(no_keys: None, url: str) -> None:
    config = ROOT / "configs" / "market-brief.yaml"
    source = {"name": "market-brief", "path": str(config), "text": config.read_text()}
    with Store.open(url) as store:
        store.create_run(
            RunRecord(id="real", workflow="market-brief", graph={"tasks": [], "workflow": source})
        )
    result = invoke("resume", "real", "--db", url)
    assert result.exit_code == 2
    assert result.stderr.startswith(
        "Error: model openai/gpt-4o-mini needs OPENAI_API_KEY, which is not set; model "
        "anthropic/claude-haiku-4-5 needs ANTHROPIC_API_KEY, which is not set; export them"
    )
    with Store.open(url) as store:
        assert store.get_events("real") == []  # nothing ran


def test_resume_of_a_run_not_from_a_workflow_file_is_exit_2(url: str) -> None:
    _static_run(url, "library", fail=frozenset({"report"}))
    result = invoke("resume", "library", "--db", url)
    assert result.exit_code == 2
    assert "run 'library' did not come from a workflow file" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_resume_after_a_killed_run_runs_only_what_had_not_finished(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    config = str(ROOT / "configs" / "market-brief.yaml")
    # At the models' pace (--time-scale 1) the run takes about 7 s; the brief alone about 3 s.
    command = [sys.executable, "-m", "delegate", "run", config, "-i", "market=home batteries"]
    command += ["--simulate", "--time-scale", "1", "--db", url, "--run-id", "killed"]
    log = tmp_path / "run.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
    finished_first: dict[str, str] = {}
    try:
        deadline = time.monotonic() + 45
        while finished_first.get("dig") != "succeeded":  # every research task, not the brief
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, finished_first
            time.sleep(0.05)
            if (tmp_path / "runs.db").exists():
                with Store.open(url) as store:
                    finished_first = {t.task_id: t.status for t in store.get_tasks("killed")}
    finally:
        process.kill()
        process.wait()
    assert "brief" not in finished_first
    with Store.open(url) as store:
        assert store.get_run("killed").status == "running"  # type: ignore[union-attr]

    resumed = subprocess.run(
        [sys.executable, "-m", "delegate", "resume", "killed", "--db", url, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stderr == ""
    document = json.loads(resumed.stdout)
    assert (document["status"], document["simulated"]) == ("succeeded", True)
    assert list(document["tasks"]) == ["angles", "dig[0]", "dig[1]", "dig[2]", "dig", "brief"]
    assert all(task["attempts"] == 1 for task in document["tasks"].values())
    with Store.open(url) as store:
        starts = Counter(
            event.data["task_id"]
            for event in store.get_events("killed")
            if event.kind == "task_started"
        )
    # Each task that had finished ran exactly once in total; the brief was cut off and ran again.
    assert {task: starts[task] for task in finished_first} == dict.fromkeys(finished_first, 1)
    assert starts["brief"] == 2
    shown = json.loads(invoke("show", "killed", "--db", url, "--json").stdout)
    assert shown["status"] == "succeeded"
    assert shown["output"] == document["output"]


def test_a_failed_library_run_has_its_reason_in_the_result_and_the_store(url: str) -> None:
    result = _static_run(url, "half", fail=frozenset({"report"}))

    assert result.status == "partial"
    report = result.tasks["report"].error
    assert report is not None
    assert result.error == f"1 of 2 tasks failed: task 'report' failed: {report}"
    with Store.open(url) as store:
        assert store.get_run("half").error == result.error  # type: ignore[union-attr]
    assert _static_run(url, "whole").error is None


def _summary_total(stderr: str) -> tuple[int, str]:
    """The tokens and USD of the task table's last row."""
    last = table(stderr, "tasks")[-1]
    return int(last[-2].replace(",", "")), last[-1]


def test_a_plan_step_is_a_row_of_the_task_table_and_the_planners_role(url: str) -> None:
    config = str(ROOT / "configs" / "due-diligence.yaml")
    args = ["run", config, "-i", "company=ACME", "-i", "depth=deep", "--simulate"]
    args += ["--time-scale", "0", "--db", url]
    document = json.loads(invoke(*args, "--run-id", "as-json", "--json").stdout)
    shown = invoke(*args, "--run-id", "shown")
    assert shown.exit_code == 0, shown.output

    tasks, usage = document["tasks"], document["usage"]
    planning = tasks["deep_dive.plan"]
    assert (planning["status"], planning["agent"], planning["model"]) == (
        "succeeded",
        "planner",
        "openai/o4-mini",
    )
    assert planning["usage"]["calls"] == 1
    # Every call of the run is in a task: the tasks add up to the run.
    for key in ("input_tokens", "output_tokens", "calls"):
        assert sum(task["usage"][key] for task in tasks.values()) == usage[key], key
    assert sum(t["usage"]["cost_usd"] for t in tasks.values()) == pytest.approx(usage["cost_usd"])
    # The planner's role: the plan step's planning and its answer (both the planner agent's).
    planner = usage["by_role"]["planner"]
    for key in ("input_tokens", "output_tokens", "calls"):
        assert planner[key] == planning["usage"][key] + tasks["deep_dive"]["usage"][key], key
    assert planner == usage["by_agent"]["planner"]

    # The table says the same: a row for the planning, and a total that is the run's.
    rows = {row[0]: row for row in table(shown.stderr, "tasks")[1:]}
    assert rows["deep_dive.plan"][1:5] == ["planner", "openai/o4-mini", "succeeded", "1"]
    tokens = usage["input_tokens"] + usage["output_tokens"]
    assert _summary_total(shown.stderr) == (tokens, format_usd(usage["cost_usd"]))
    assert f": {tokens:,} tokens in {usage['calls']} calls, " in shown.stderr
    roles = {row[0]: row for row in table(shown.stderr, "usage by role")[1:]}
    assert roles["planner"][1:] == [
        str(planner["calls"]),
        f"{planner['input_tokens'] + planner['output_tokens']:,}",
        format_usd(planner["cost_usd"]),
    ]


def test_a_planned_runs_table_has_its_plans_and_answer_and_adds_up(url: str) -> None:
    config = ROOT / "configs" / "research-planner.yaml"
    args = ["run", str(config), *_input_args(config), "--simulate", "--time-scale", "0"]
    shown = invoke(*args, "--db", url, "--run-id", "planned")
    assert shown.exit_code == 0, shown.output
    document = json.loads(invoke("show", "planned", "--db", url, "--json").stdout)
    usage, [plan] = document["usage"], document["plans"]

    rows = {row[0]: row for row in table(shown.stderr, "tasks")[1:]}
    assert rows["plan 1"][3:7] == [
        "succeeded",
        str(plan["attempts"]),
        f"{plan['usage']['input_tokens'] + plan['usage']['output_tokens']:,}",
        format_usd(plan["usage"]["cost_usd"]),
    ]
    assert "goal checks, answer" in rows  # judge_goal: a goal check, then the answer
    tokens = usage["input_tokens"] + usage["output_tokens"]
    assert _summary_total(shown.stderr) == (tokens, format_usd(usage["cost_usd"]))
    assert table(shown.stderr, "tasks")[-1][0] == "total"
    # `delegate show` tables the stored run the same way.
    stored = invoke("show", "planned", "--db", url).stdout
    assert table(stored, "tasks")[1:] == table(shown.stderr, "tasks")[1:]


def test_the_models_pace_of_a_simulated_run_is_its_critical_path(url: str) -> None:
    from delegate._sync import run_sync
    from delegate.workflows.runtime import compile_workflow, parse_inputs, run_workflow

    config = ROOT / "configs" / "market-brief.yaml"
    loaded = load_workflow(config)
    compiled = compile_workflow(loaded, simulate=True, time_scale=0.0, db=url)
    inputs = parse_inputs(loaded.spec, ["market=home batteries"])
    result = run_sync(run_workflow, compiled, inputs, run_id="api")

    # Each task's simulated seconds, from the models' own requests: the scout answered the
    # angles (structured) and each angle; the editor the brief.
    scout, editor = compiled.agents["scout"].model, compiled.agents["editor"].model
    latency = {}
    for request in scout.requests:
        prompt = request.messages[-1]["content"]
        if request.output_schema is not None:
            latency["angles"] = scout.expected_latency(request)
        else:
            [index] = [
                n for n, angle in enumerate(result.tasks["angles"].output.angles)
                if prompt == f"Research {angle} for the home batteries market."
            ]  # fmt: skip
            latency[f"dig[{index}]"] = scout.expected_latency(request)
    [brief] = editor.requests
    latency["brief"] = editor.expected_latency(brief)
    # The items start once the angles are known; the brief once every item has ended.
    expected = latency["angles"] + max(latency[f"dig[{n}]"] for n in range(3)) + latency["brief"]
    assert compiled.pace.run_seconds(result) == pytest.approx(expected)
    assert expected > 2  # seconds of real models, whatever the wall clock did

    waits = {
        "0.05": "waited 0.05× the models' latency",
        "0": "did not wait for the models' latency",
    }
    for scale, waited in waits.items():
        shown = invoke(
            "run", str(config), "-i", "market=home batteries", "--simulate", "--time-scale",
            scale, "--db", url, "--run-id", f"cli-{scale}",
        )  # fmt: skip
        assert shown.exit_code == 0, shown.output
        assert (
            f"the simulation {waited}: at their pace the run would take about {expected:.1f} s "
            "(the critical path of its simulated calls)\n"
        ) in shown.stderr


UNKNOWN_MODEL = """name: typo
agents:
  scout: {model: openai/gpt-4o-mni}
  local: {model: ollama/llama3-homegrown}
steps:
  - {id: a, agent: scout, prompt: hi}
  - {id: b, agent: local, prompt: hi}
"""


def test_an_unknown_model_is_exit_2_with_did_you_mean(tmp_path: Path, url: str) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text(UNKNOWN_MODEL)
    message = (
        f"{path}:3:18: agent 'scout': model 'openai/gpt-4o-mni' is not one litellm knows (did "
        "you mean 'openai/gpt-4o-mini'?); correct the name, or, for a model litellm does not "
        "list (a new model, a deployment), give its price: prices: {openai/gpt-4o-mni: "
        "[input_usd_per_million, output_usd_per_million]}"
    )

    validated = invoke("validate", str(path))
    assert validated.exit_code == 2
    assert validated.stderr == message + "\n"  # the local server's model is not a problem

    ran = invoke("run", str(path), "--simulate", "--time-scale", "0", "--db", url)
    assert ran.exit_code == 2
    assert ran.stderr == f"Error: {message}\n"
    assert "Traceback" not in ran.output
    with Store.open(url) as store:
        assert store.list_runs() == []  # refused before it started

    # Given its price, a model litellm does not list is taken as it is.
    priced = tmp_path / "priced.yaml"
    priced.write_text(UNKNOWN_MODEL + "prices: {openai/gpt-4o-mni: [0.15, 0.6]}\n")
    assert invoke("validate", str(priced)).exit_code == 0
