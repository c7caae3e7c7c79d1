"""`delegate eval`: the table, `--json`, `--report`, exit statuses, `--simulate`'s label, the
planner-only baseline, and a real (non-simulated) evaluation against a local OpenAI-compatible
server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from _fake_openai_server import FakeOpenAIServer, completion
from click.testing import CliRunner, Result

from delegate.cli import main
from delegate.evals import SIMULATED_WARNING

ROOT = Path(__file__).resolve().parent.parent
EXTRACT = ROOT / "examples" / "extract" / "evals"
WORKFLOW = str(EXTRACT / "extract.yaml")
CASES = str(EXTRACT / "cases.jsonl")

REPORT_KEYS = {
    "dataset",
    "cases",
    "scorers",
    "baseline",
    "simulated",
    "note",
    "budget_usd",
    "spent_usd",
    "configurations",
}
CONFIG_KEYS = {
    "name",
    "kind",
    "simulated",
    "cases",
    "passed",
    "failed",
    "errors",
    "not_run",
    "pass_rate",
    "mean_score",
    "cost_usd",
    "cost_per_case_usd",
    "calls",
    "p50_seconds",
    "p95_seconds",
    "saving",
}
CASE_KEYS = {
    "case_id",
    "status",
    "score",
    "scores",
    "output",
    "error",
    "cost_usd",
    "calls",
    "seconds",
}


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def first_cases(tmp_path: Path, count: int) -> str:
    path = tmp_path / "few.jsonl"
    lines = Path(CASES).read_text(encoding="utf-8").splitlines()[:count]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def test_a_simulated_evaluation_prints_the_table_and_says_quality_means_nothing(
    tmp_path: Path,
) -> None:
    result = invoke(
        "eval",
        WORKFLOW,
        "--dataset",
        first_cases(tmp_path, 4),
        "--scorer",
        "field:total~0.01",
        "--compare",
        "planner-only",
        "--planner",
        "openai/o4-mini",
        "--simulate",
        "--budget",
        "0.5",
    )
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith(SIMULATED_WARNING)
    assert "pass rates and scores are meaningless" in out
    assert "few: 4 cases, scored by field:total~0.01" in out
    header = next(line for line in out.splitlines() if line.startswith("configuration"))
    assert header.split() == [
        "configuration",
        "pass",
        "rate",
        "score",
        "passed",
        "failed",
        "errors",
        "not",
        "run",
        "cost",
        "per",
        "case",
        "saving",
        "p50",
        "p95",
        "calls",
    ]
    assert "planner-only (baseline)" in out
    extract = next(line for line in out.splitlines() if line.startswith("extract "))
    assert extract.split()[-1] == "12"  # 4 invoices × 3 votes
    assert "extract ·" not in out  # failures of simulated answers are not listed
    assert "failures are not listed: the answers are simulated" in out
    assert "of a $0.50 budget" in out


def test_json_is_the_report_and_html_is_written(tmp_path: Path) -> None:
    page, schema = tmp_path / "eval.html", tmp_path / "schema.json"
    schema.write_text('{"type": "object", "required": ["total"]}', encoding="utf-8")
    result = invoke(
        "eval",
        WORKFLOW,
        "--dataset",
        first_cases(tmp_path, 2),
        "--scorer",
        f"json_schema:{schema}",
        "--compare",
        "planner-only",
        "--simulate",
        "--json",
        "--report",
        str(page),
    )
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(result.stdout)
    assert set(document) == REPORT_KEYS
    assert (document["simulated"], document["note"]) == (True, SIMULATED_WARNING)
    assert document["baseline"] == "planner-only"
    assert [c["name"] for c in document["configurations"]] == ["extract", "planner-only"]
    for config in document["configurations"]:
        assert set(config) == CONFIG_KEYS
        assert [set(c) for c in config["cases"]] == [CASE_KEYS, CASE_KEYS]
        assert config["passed"] == 2  # schema-valid answers, even simulated
    extract, baseline = document["configurations"]
    assert extract["saving"] == pytest.approx(
        1 - extract["cost_per_case_usd"] / baseline["cost_per_case_usd"]
    )
    assert baseline["saving"] is None
    html = page.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>")
    assert SIMULATED_WARNING in html
    assert f"report written to {page}" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scorer", "fuzzy"], "--scorer 'fuzzy' is not a scorer; use one of: exact"),
        (["--scorer", "judge:jduge"], "the workflow has no agent 'jduge' (did you mean 'judge'?)"),
        (["--scorer", "regex:(x"], "does not compile"),
        (["--scorer", "field:total~abc"], "'abc' is not a tolerance"),
        (["--compare", "nope.yaml"], "--compare 'nope.yaml': no such workflow file"),
        (["--planner", "openai/o3"], "add --compare planner-only"),
        (["--concurrency", "0"], "--concurrency must be at least 1"),
        (["--budget", "-1"], "--budget must be a finite number more than 0"),
    ],
)
def test_bad_input_exits_2_with_a_message_and_no_traceback(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = invoke("eval", WORKFLOW, "--dataset", first_cases(tmp_path, 1), "--simulate", *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_a_bad_dataset_line_exits_2_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "cases.jsonl"
    path.write_text('{"inputs": {"document": "x"}}\n\n{"inputs": 1\n', encoding="utf-8")
    result = invoke("eval", WORKFLOW, "--dataset", str(path), "--simulate")
    assert result.exit_code == 2
    assert f"{path}:3 is not valid JSON" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_credentials_exit_2_before_anything_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    result = invoke("eval", WORKFLOW, "--dataset", first_cases(tmp_path, 1))
    assert result.exit_code == 2
    assert "OPENAI_API_KEY" in result.stderr
    assert "--simulate" in result.stderr


LOCAL = """\
name: local-capitals
inputs:
  country: {{type: string}}
endpoints:
  local: {{base_url: "{base_url}", price: [1, 2]}}
agents:
  mini: {{model: openai/local-mini, endpoint: local}}
steps:
  - {{id: answer, agent: mini, prompt: "Capital of {{{{ inputs.country }}}}?"}}
output: answer
"""


def test_a_real_evaluation_checks_the_pass_rate(tmp_path: Path) -> None:
    cases = tmp_path / "capitals.jsonl"
    rows = [
        {"id": "fr", "inputs": {"country": "France"}, "expected": "Paris"},
        {"id": "it", "inputs": {"country": "Italy"}, "expected": "Paris"},
        {"id": "es", "inputs": {"country": "Spain"}, "expected": "Madrid"},
    ]
    cases.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    with FakeOpenAIServer(price=(1.0, 2.0)) as server:
        server.default = completion("Paris", prompt_tokens=20, completion_tokens=3)
        workflow = tmp_path / "local.yaml"
        workflow.write_text(LOCAL.format(base_url=server.base_url), encoding="utf-8")
        args = ["eval", str(workflow), "--dataset", str(cases), "--json"]
        passing = invoke(*args, "--min-pass-rate", "0.6")
        failing = invoke(*args, "--min-pass-rate", "0.7")
        assert server.billed_calls == 6
    assert passing.exit_code == 0, passing.output
    document = json.loads(passing.stdout)
    assert (document["simulated"], document["note"]) == (False, "")
    local = document["configurations"][0]
    assert (local["passed"], local["failed"], local["pass_rate"]) == (2, 1, pytest.approx(2 / 3))
    assert local["calls"] == 3
    assert local["cost_usd"] == pytest.approx(3 * (20 * 1e-6 + 3 * 2e-6))
    assert failing.exit_code == 1
    assert "pass rate 67% of 'local' is below --min-pass-rate 70%" in failing.stderr


def test_a_budget_that_runs_out_reports_the_remaining_cases_as_not_run() -> None:
    args = ["--simulate", "--budget", "0.01", "--concurrency", "1", "--json"]
    result = invoke("eval", WORKFLOW, "--dataset", CASES, *args)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    extract = document["configurations"][0]
    assert document["spent_usd"] <= 0.01
    assert document["spent_usd"] == pytest.approx(extract["cost_usd"])
    assert 0 < extract["not_run"] < 20
    assert extract["errors"] == 0
    assert extract["passed"] + extract["failed"] + extract["not_run"] == 20
    statuses = [case["status"] for case in extract["cases"]]
    # One case at a time, in the dataset's order: once one is stopped, none after it runs.
    assert statuses[statuses.index("not_run") :] == ["not_run"] * extract["not_run"]


def test_another_workflow_is_compared_side_by_side(tmp_path: Path) -> None:
    one_vote = tmp_path / "one_vote.yaml"
    text = Path(WORKFLOW).read_text(encoding="utf-8")
    one_vote.write_text(text.replace("votes: 3", "votes: 1"), encoding="utf-8")
    dataset = first_cases(tmp_path, 4)
    args = ["--compare", str(one_vote), "--simulate", "--json"]
    result = invoke("eval", WORKFLOW, "--dataset", dataset, *args)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["baseline"] is None
    extract, single = document["configurations"]
    assert (extract["name"], single["name"]) == ("extract", "one_vote")
    # Three votes (the judge only on disagreement), or one answer that the judge always checks.
    assert (extract["calls"], single["calls"]) == (12, 8)
    assert single["cost_usd"] < extract["cost_usd"]
    assert single["saving"] is None
