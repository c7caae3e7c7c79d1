"""Runs that survive the command line: stop signals, closed pipes, owned runs (`resume
--force`, `interrupted` and `stale` in `runs` and `show`), and hostile arguments."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from delegate.cli import main
from delegate.memory.records import RunRecord
from delegate.memory.store import Store

ROOT = Path(__file__).resolve().parent.parent
CONFIG = str(ROOT / "configs" / "market-brief.yaml")
CORPUS = Path(__file__).parent / "workflows" / "hostile"
ARRAY_WORKFLOW = """\
name: lists
inputs:
  items: {type: array}
agents:
  scout: {model: openai/gpt-4o-mini}
steps:
  - id: a
    agent: scout
    prompt: "Count {{ inputs.items }}"
"""


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), prog_name="delegate")


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'runs.db'}"


def _statuses(url: str, run_id: str) -> dict[str, str]:
    if not Path(url.removeprefix("sqlite:///")).exists():
        return {}
    with Store.open(url) as store:
        return {task.task_id: task.status for task in store.get_tasks(run_id)}


def _start(url: str, run_id: str, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    """`delegate run` of the market brief, simulated at the models' pace (about 7 s), returned
    once its first task succeeded: mid-run."""
    command = [sys.executable, "-m", "delegate", "run", CONFIG, "-i", "market=home batteries"]
    command += ["--simulate", "--time-scale", "1", "--db", url, "--run-id", run_id, *extra]
    with log.open("w") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
    deadline = time.monotonic() + 45
    while "succeeded" not in _statuses(url, run_id).values():
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    return process


# -- stop signals -----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "code", "name"),
    [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "Ctrl-C")],
)
def test_a_stopped_run_is_stored_as_interrupted_and_says_how_to_resume(
    tmp_path: Path, url: str, signum: int, code: int, name: str
) -> None:
    log = tmp_path / "run.log"
    process = _start(url, "stopped", log)
    finished_before = {t for t, status in _statuses(url, "stopped").items() if status != "running"}

    process.send_signal(signum)

    assert process.wait(timeout=30) == code
    text = log.read_text()
    assert text.splitlines()[-1] == (
        f"run stopped stopped by {name} and kept as interrupted; continue it with "
        f"`delegate resume stopped --db {url}`"
    )
    assert "Traceback" not in text
    assert "Aborted" not in text
    with Store.open(url) as store:
        run = store.get_run("stopped")
        assert run is not None
        assert run.status == "interrupted"
        assert "stopped before it finished" in str(run.error)
        assert store.get_lease("stopped") is None  # given up: resumable at once
    listed = json.loads(invoke("runs", "--db", url, "--json").stdout)
    assert [(r["run_id"], r["status"]) for r in listed["runs"]] == [("stopped", "interrupted")]
    shown = invoke("show", "stopped", "--db", url).stdout.splitlines()
    assert shown[1:3] == [
        "run stopped: interrupted",
        f"resume it: delegate resume stopped --db {url}",
    ]
    if signum != signal.SIGTERM:
        return

    resumed = invoke("resume", "stopped", "--db", url, "--json")

    assert resumed.exit_code == 0, resumed.output
    document = json.loads(resumed.stdout)
    assert document["status"] == "succeeded"
    assert all(document["tasks"][task]["attempts"] == 1 for task in finished_before)


# -- closed pipes -----------------------------------------------------------------------------


@pytest.mark.slow
def test_a_reader_that_goes_away_does_not_stop_the_run(url: str) -> None:
    # `delegate run … 2>&1 | head -3`: the reader leaves after the third line of progress.
    command = [sys.executable, "-m", "delegate", "run", CONFIG, "-i", "market=x", "--simulate"]
    command += ["--time-scale", "0.2", "--db", url, "--run-id", "piped"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert process.stdout is not None
    lines = [process.stdout.readline() for _ in range(3)]
    process.stdout.close()

    assert process.wait(timeout=60) == 0
    assert lines[0].decode().startswith("delegate · market-brief run piped")
    assert lines[2].decode().endswith(" run piped started\n")
    with Store.open(url) as store:
        run = store.get_run("piped")
    assert run is not None
    assert (run.status, run.error) == ("succeeded", None)
    assert isinstance(run.output, str)
    assert run.output.strip()


@pytest.mark.slow
@pytest.mark.parametrize("as_json", [False, True])
def test_a_closed_stdout_leaves_the_run_and_stderr_whole(
    tmp_path: Path, url: str, as_json: bool
) -> None:
    command = [sys.executable, "-m", "delegate", "run", CONFIG, "-i", "market=x", "--simulate"]
    command += ["--time-scale", "0", "--db", url, "--run-id", "quiet"]
    command += ["--json", "--progress"] if as_json else []
    log = tmp_path / "stderr.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr)
    assert process.stdout is not None
    process.stdout.close()  # nobody reads the output

    assert process.wait(timeout=60) == 0
    text = log.read_text()
    assert ("run succeeded: " if as_json else "run quiet succeeded in ") in text  # the summary
    assert "Exception ignored" not in text
    assert "BrokenPipeError" not in text
    with Store.open(url) as store:
        assert store.get_run("quiet").status == "succeeded"  # type: ignore[union-attr]


# -- owned runs: resume --force, interrupted and stale -------------------------------------------

SOURCE = {"text": "name: w\n", "simulate": True}


def _record(store: Store, run_id: str, status: str = "running", *, source: bool = True) -> None:
    graph: dict[str, object] = {"version": 1, "tasks": []}
    if source:
        graph["workflow"] = SOURCE
    store.create_run(RunRecord(id=run_id, workflow="w", graph=graph))
    if status != "running":
        store.finish_run(run_id, status=status, output=None, usage={}, error="it stopped")


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_runs_and_show_tell_interrupted_stale_and_running_runs_apart(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    host, dead = socket.gethostname(), _dead_pid()
    with Store.open(url) as store:
        for run_id, status in [("done", "succeeded"), ("half", "partial"), ("cut", "interrupted")]:
            _record(store, run_id, status)
        _record(store, "killed")  # no lease: never owned, or its lease was deleted
        _record(store, "lapsed")
        store.acquire_lease("lapsed", "owner-1", seconds=-5)  # its owner stopped renewing it
        _record(store, "gone")
        with monkeypatch.context() as patch:  # owned by a process of this machine that died
            patch.setattr(os, "getpid", lambda: dead)
            store.acquire_lease("gone", "owner-2", seconds=60)
        _record(store, "live")
        store.acquire_lease("live", "owner-3", seconds=60)  # this process: alive
        _record(store, "library", "failed", source=False)

    listed = json.loads(invoke("runs", "--db", url, "--json").stdout)["runs"]
    table = [re.split(r"\s{2,}", line) for line in invoke("runs", "--db", url).stdout.splitlines()]

    expected = {
        "done": "succeeded",
        "half": "partial",
        "cut": "interrupted",
        "killed": "stale",
        "lapsed": "stale",
        "gone": "stale",
        "live": "running",
        "library": "failed",
    }
    assert {run["run_id"]: run["status"] for run in listed} == expected
    assert {cells[0]: cells[2] for cells in table[2:]} == expected

    def hint(run_id: str) -> list[str]:
        lines = invoke("show", run_id, "--db", url).stdout.splitlines()
        assert lines[1].startswith(f"run {run_id}: {expected[run_id]}")
        return [line for line in lines[2:3] if not line.startswith("workflow:")]

    resume = f"resume it: delegate resume {{}} --db {url}"
    assert hint("done") == []
    assert hint("half") == [resume.format("half")]
    assert hint("cut") == [resume.format("cut")]
    assert hint("killed") == [
        "stale: stored as running, but no process owns it; " + resume.format("killed")
    ]
    (lapsed,) = hint("lapsed")
    assert lapsed.startswith(
        f"stale: stored as running, but its owner stopped renewing it (pid {os.getpid()} on host "
        f"{host} (renewed "
    )
    assert lapsed.endswith(" ago)); " + resume.format("lapsed"))
    assert hint("gone") == [
        f"stale: stored as running, but its process (pid {dead} on host {host}) is gone; "
        + resume.format("gone")
    ]
    (live,) = hint("live")
    assert live.startswith(f"running: owned by pid {os.getpid()} on host {host} (renewed ")
    assert invoke("show", "library", "--db", url).stdout.splitlines()[:2] == [
        "run library: failed",
        "resume it from Python: Orchestrator(...).resume('library')",
    ]
    assert json.loads(invoke("show", "gone", "--db", url, "--json").stdout)["status"] == "stale"


def _simulated_run(url: str, run_id: str) -> None:
    result = invoke(
        "run", CONFIG, "-i", "market=x", "--simulate", "--time-scale", "0", "--db", url,
        "--run-id", run_id, "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("status", "race"), [("running", False), ("interrupted", False), ("interrupted", True)]
)
def test_resume_of_a_run_another_process_owns_names_it_and_force_takes_it_over(
    url: str, status: str, race: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A run being resumed by another process keeps its stored status ("interrupted"). `race`:
    # the other process takes the run after the command looked, and the orchestrator refuses.
    _simulated_run(url, "owned")
    with Store.open(url) as store:
        store.finish_run("owned", status=status, output=None, usage={}, error=None)
        store.acquire_lease("owned", "another-process", seconds=60)
    if race:
        monkeypatch.setattr(Store, "get_lease", lambda self, run_id: None)

    refused = invoke("resume", "owned", "--db", url, "--json")

    assert refused.exit_code == 2
    assert refused.stdout == ""
    assert refused.stderr.count("\n") == 1
    assert refused.stderr.startswith(
        f"Error: run 'owned' is being run by pid {os.getpid()} on host {socket.gethostname()} "
        "(renewed "
    )
    assert refused.stderr.endswith(
        "; wait for it to finish, or, if you know that process is dead, take the run over: "
        f"delegate resume owned --db {url} --force\n"
    )
    monkeypatch.undo()
    with Store.open(url) as store:
        assert store.get_lease("owned").owner == "another-process"  # type: ignore[union-attr]

    taken = invoke("resume", "owned", "--db", url, "--force", "--json")

    assert taken.exit_code == 0, taken.output
    assert json.loads(taken.stdout)["status"] == "succeeded"
    with Store.open(url) as store:
        assert store.get_run("owned").status == "succeeded"  # type: ignore[union-attr]
        assert store.get_lease("owned") is None


# -- hostile arguments ------------------------------------------------------------------------


def _one_line_error(result: Result) -> str:
    """The message of a user error: exit status 2, one line on stderr, nothing else."""
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.startswith("Error: ")
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr.removeprefix("Error: ").rstrip("\n")


def test_a_fifo_as_the_workflow_or_the_input_file_is_refused_without_waiting(
    tmp_path: Path, url: str
) -> None:
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    refused = "cannot read the file: it is a FIFO (named pipe), not a regular file; give the path"
    assert _one_line_error(invoke("run", str(fifo), "--db", url)).startswith(f"{fifo}:1:1: ")
    assert refused in _one_line_error(invoke("plan", str(fifo)))
    validated = invoke("validate", str(fifo))
    assert (validated.exit_code, validated.stdout) == (2, "")
    assert validated.stderr == f"{fifo}:1:1: {refused} of a file\n"
    assert _one_line_error(
        invoke("run", CONFIG, "--input-file", str(fifo), "--simulate", "--db", url)
    ) == (
        f"cannot read the input file {str(fifo)!r}: it is a FIFO (named pipe), not a regular "
        "file; give the path of a file"
    )


def test_hostile_input_files_are_refused(tmp_path: Path, url: str) -> None:
    def run(input_file: str) -> str:
        return _one_line_error(
            invoke("run", CONFIG, "--input-file", input_file, "--simulate", "--db", url)
        )

    assert run("/dev/zero") == (
        "cannot read the input file '/dev/zero': it is a device, not a regular file; give the "
        "path of a file"
    )
    laughs = tmp_path / "laughs.yaml"
    laughs.write_bytes((CORPUS / "billion-laughs.yaml").read_bytes())
    assert run(str(laughs)).startswith(
        f"input file {str(laughs)!r} does not parse (line 8, column 7): aliases expand to more "
        "than 10,000 values"
    )
    deep = tmp_path / "deep.json"
    deep.write_text('{"market": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert f"input file {str(deep)!r}" in run(str(deep))
    assert "100 levels deep" in run(str(deep))
    tagged = tmp_path / "tagged.yaml"
    tagged.write_text('market: !!python/object/apply:os.system ["true"]\n')
    assert "the tag !!python/object/apply:os.system is not allowed" in run(str(tagged))
    big = tmp_path / "big.json"
    big.write_text('{"market": "' + "x" * (1 << 20) + '"}')
    assert run(str(big)) == (
        f"cannot read the input file {str(big)!r}: it has 1,048,590 bytes, more than the limit "
        "of 1,048,576"
    )
    many = tmp_path / "many.json"
    many.write_text(json.dumps({"market": "x"} | {f"k{i}": 1 for i in range(60_000)}))
    told = run(str(many))
    assert told.startswith("workflow 'market-brief' has no input 'k0' (inputs: market); ")
    assert told.count("has no input") == 20
    assert told.endswith("; and 59,980 more names that are not inputs of 'market-brief'")
    assert not Path(url.removeprefix("sqlite:///")).exists()  # no run was stored


def test_tokens_reads_a_bounded_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("delegate.cli.tokens._MAX_TOKENS_TEXT", 10)
    result = CliRunner().invoke(main, ["tokens", "-"], input="x" * 11, prog_name="delegate")
    assert _one_line_error(result) == "stdin has more than 10 characters; count a part of it"


def test_deep_or_non_finite_input_values_are_refused(tmp_path: Path, url: str) -> None:
    workflow = tmp_path / "lists.yaml"
    workflow.write_text(ARRAY_WORKFLOW)

    def run(*args: str) -> str:
        return _one_line_error(invoke("run", str(workflow), *args, "--simulate", "--db", url))

    assert run("-i", "items=" + "[" * 100_000 + "]" * 100_000).startswith("input 'items' ")
    assert "100 levels deep" in run("-i", "items=" + "[" * 100_000)
    assert run("-i", "items=[NaN]") == (
        "input 'items' holds NaN or an infinity, which JSON (and so the store) cannot hold; give "
        "finite numbers"
    )
    malformed = run("-i", "items=[1, 2")
    assert malformed.startswith("input 'items': '[1, 2' is not a valid array (")
    assert malformed.endswith("""); e.g. -i 'items=["a", "b"]'""")
    infinite = tmp_path / "infinite.yaml"
    infinite.write_text("items: [.inf]\n")
    assert run("--input-file", str(infinite)).startswith("input 'items' holds NaN or an infinity")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["runs", "--limit", str(10**20)],
            "--limit must be at least 1 and at most 10,000, got 100,000,000,000,000,000,000",
        ),
        (["runs", "--limit", "0"], "--limit must be at least 1 and at most 10,000, got 0"),
        *[
            (
                ["run", CONFIG, "-i", "market=x", "--simulate", "--time-scale", value],
                f"--time-scale must be a finite number at least 0 and at most 100, got {shown}; "
                "1 waits at the models' pace, 0 does not wait",
            )
            for value, shown in [("1e308", "1e+308"), ("inf", "inf"), ("nan", "nan"), ("-1", "-1")]
        ],
        (
            ["run", CONFIG, "-i", "market=x", "--simulate", "--budget-usd", "inf"],
            "--budget-usd must be a finite number more than 0, got inf",
        ),
    ],
)
def test_numbers_out_of_range_are_one_line_errors(args: list[str], message: str) -> None:
    assert _one_line_error(invoke(*args)) == message


@pytest.mark.parametrize("command", ["run", "runs", "show", "resume"])
def test_a_file_that_is_not_a_sqlite_database_is_no_store(command: str) -> None:
    args = {
        "run": ["run", CONFIG, "-i", "market=x", "--simulate"],
        "runs": ["runs"],
        "show": ["show", "r1"],
        "resume": ["resume", "r1"],
    }[command]
    message = _one_line_error(invoke(*args, "--db", "sqlite:////etc/passwd"))
    remedy = ", or a new path to create one" if command == "run" else ""
    assert message == (
        "--db: '/etc/passwd' is not a SQLite database, so not a delegate store; give the path of "
        f"a store{remedy}"
    )


@pytest.mark.parametrize("command", [["runs"], ["show", "r1"], ["resume", "r1"]])
def test_commands_that_read_never_create_a_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert _one_line_error(invoke(*command, "--db", "notaurl")) == (
        "--db: there is no store at 'notaurl' (the file does not exist); give the path or URL "
        "of an existing store (sqlite:///path/to/delegate.db, postgresql://...)"
    )
    assert list(tmp_path.iterdir()) == []
    other = tmp_path / "other.db"
    import sqlite3

    with sqlite3.connect(other) as connection:
        connection.execute("CREATE TABLE notes (text)")
    connection.close()
    assert _one_line_error(invoke(*command, "--db", str(other))) == (
        f"--db: {str(other)!r} is a SQLite database but not a delegate store (it has no runs); "
        "give the path of a store"
    )
    with sqlite3.connect(other) as connection:
        tables = connection.execute("SELECT name FROM sqlite_master").fetchall()
    connection.close()
    assert tables == [("notes",)]  # untouched


def test_run_refuses_a_store_in_a_folder_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "runs.db"
    message = _one_line_error(
        invoke("run", CONFIG, "-i", "market=x", "--simulate", "--db", str(missing))
    )
    assert message == (
        f"cannot create the store {str(missing)!r}: the folder {str(missing.parent)!r} does not "
        "exist; create it, or give --db another path"
    )
