"""The code review example (examples/code_review/) end to end, offline, on the demo repository."""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))

from code_review.demo import DEMO_BASE, make_demo_repo
from code_review.fakes import fake_planner, fake_worker, verify_findings
from code_review.findings import (
    FileReview,
    Finding,
    Review,
    VerifiedFindings,
    VerifiedReview,
)
from code_review.gitdiff import git_diff, parse_diff, parse_rendered, render_hunks
from code_review.main import BUDGET_USD, main
from code_review.pipeline import Crew, build_graph, make_crew, task_ids

from delegate import Agent, Budget, ModelRequest, Orchestrator, RunResult
from delegate.testing import FunctionModel, block_model_requests

# The seeded bugs, as (file, line, severity): what the offline review must report, no more.
SEEDED = [
    ("shop/users.py", 24, "critical"),  # SQL built by concatenation
    ("shop/inventory.py", 18, "major"),  # range(1, len(prices) + 1)
    ("shop/notify.py", 24, "major"),  # mailer.send(...) without await
    ("shop/reports.py", 22, "minor"),  # a file opened outside `with`, never closed
    ("shop/reports.py", 24, "minor"),  # a debug print
    ("shop/reports.py", 25, "info"),  # a TODO
]
# The reviewer's unfounded finding: `import hashlib` is unchanged context (and used elsewhere).
UNFOUNDED = ("shop/users.py", 5)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_demo_repo(tmp_path_factory.mktemp("review") / "shop")


@pytest.fixture(scope="module")
def added(demo: Path) -> dict[str, set[int]]:
    """Added or changed lines by file, read from the demo's diff independently of the run."""
    return {file.path: file.added_lines for file in parse_diff(git_diff(demo, DEMO_BASE))}


@pytest.fixture(scope="module")
def run(demo: Path) -> tuple[RunResult, str]:
    # Module-scoped, so set up before the function-scoped guard of conftest: guard it here.
    out = io.StringIO()
    with block_model_requests(), contextlib.redirect_stdout(out):
        result = main([str(demo), "--base", DEMO_BASE])
    return result, out.getvalue()


def _where(findings: list[Finding]) -> list[tuple[str, int, str]]:
    return sorted((f.file, f.line, f.severity) for f in findings)


def test_the_demo_diff_has_four_files_with_only_added_lines(added: dict[str, set[int]]) -> None:
    assert added == {
        "shop/inventory.py": set(range(14, 19)),
        "shop/notify.py": set(range(18, 25)),
        "shop/reports.py": set(range(18, 27)),
        "shop/users.py": {6, *range(19, 27)},
    }


def test_every_kept_finding_names_a_changed_line_of_a_file_in_the_diff(
    run: tuple[RunResult, str], added: dict[str, set[int]]
) -> None:
    result, _ = run
    assert result.status == "succeeded"
    review = result.output
    assert isinstance(review, Review)
    collected = result.tasks["collect"].output
    assert isinstance(collected, VerifiedReview)
    for finding in [*review.findings, *collected.findings]:
        assert finding.file in added, finding
        assert finding.line in added[finding.file], finding
    # The pattern checks find every seeded bug, and nothing else survives verification.
    assert _where(review.findings) == sorted(SEEDED)
    assert _where(collected.findings) == sorted(SEEDED)


def test_the_unfounded_finding_is_made_then_dropped_by_the_verifier(
    run: tuple[RunResult, str], demo: Path
) -> None:
    result, out = run
    ids = task_ids(parse_diff(git_diff(demo, DEMO_BASE)))["shop/users.py"]
    made = result.tasks[ids.review].output
    assert isinstance(made, FileReview)
    assert [(f.file, f.line) for f in made.findings] == [UNFOUNDED, ("shop/users.py", 24)]
    checked = result.tasks[ids.verify].output
    assert isinstance(checked, VerifiedFindings)
    [dropped] = checked.dropped
    assert (dropped.finding.file, dropped.finding.line) == UNFOUNDED
    assert "`import hashlib`" in dropped.finding.message
    assert dropped.reason == "line 5 is not an added or changed line (unchanged context)"
    assert [(f.file, f.line) for f in checked.kept] == [("shop/users.py", 24)]
    # Only the one file had something to drop.
    for path, task in task_ids(parse_diff(git_diff(demo, DEMO_BASE))).items():
        verified = result.tasks[task.verify].output
        assert isinstance(verified, VerifiedFindings)
        assert len(verified.dropped) == (1 if path == "shop/users.py" else 0)
    review = result.output
    assert isinstance(review, Review)
    assert UNFOUNDED not in [(f.file, f.line) for f in review.findings]
    dropped_part = out.split("dropped by the verifiers as unfounded:")[1]
    assert "- shop/users.py:5 [minor] unused import: `import hashlib` is never used" in dropped_part


def test_the_review_groups_findings_by_severity_critical_first(
    run: tuple[RunResult, str],
) -> None:
    result, out = run
    review = result.output
    assert isinstance(review, Review)
    assert [s.severity for s in review.sections] == ["critical", "major", "minor", "info"]
    for section in review.sections:
        assert {f.severity for f in section.findings} == {section.severity}
    assert review.verdict == "request changes"
    assert "Fix before merging: SQL built by string concatenation (shop/users.py:24)" in (
        review.summary
    )
    headings = ["## Critical (1)", "## Major (2)", "## Minor (2)", "## Info (1)"]
    positions = [out.index(heading) for heading in headings]
    assert positions == sorted(positions)
    assert out.index("# Review: request changes") < positions[0]


def test_the_budget_held_and_the_roles_are_costed(run: tuple[RunResult, str]) -> None:
    result, out = run
    usage = result.usage
    assert usage.cost_usd <= BUDGET_USD
    assert usage.refused == 0
    # 4 files × (review + verify) on the mini model, one synthesis on the planner's.
    assert usage.calls == 9
    assert usage.by_role["workers"].calls == 8
    assert usage.by_role["planner"].calls == 1
    assert set(usage.by_model) == {"openai/gpt-4o-mini", "openai/o4-mini"}
    assert usage.by_agent["lead"].calls == 1
    assert usage.by_agent["reviewer"].calls == usage.by_agent["verifier"].calls == 4
    assert usage.planner_only_usd is not None
    assert usage.cost_usd < usage.planner_only_usd
    # The mini workers did most of the reading, for less than the planner's one call.
    assert usage.by_role["workers"].input_tokens > usage.by_role["planner"].input_tokens
    assert usage.by_role["workers"].cost_usd < usage.by_role["planner"].cost_usd
    assert f"budget: ${usage.cost_usd:.5f} spent of ${BUDGET_USD:.2f} — held, no call refused" in (
        out
    )
    saving = 1 - usage.cost_usd / usage.planner_only_usd
    assert f"saving: {saving:.0%}" in out
    assert f"planner_only_usd: ${usage.planner_only_usd:.5f}" in out


def test_without_a_path_the_demo_repository_is_reviewed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    result = main(["--demo"])
    assert isinstance(result.output, Review)
    assert _where(result.output.findings) == sorted(SEEDED)
    assert "code review of the demo repository: main → working tree, 4 files, +30 −0" in (
        capsys.readouterr().out
    )


def test_a_path_that_is_not_a_repository_is_refused_with_the_remedy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([str(tmp_path), "--base", "main"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"git diff main failed in {tmp_path}" in err
    assert "give the path of a git working tree" in err


def _keep_everything(request: ModelRequest) -> dict[str, Any]:
    findings = request.messages[-1]["content"].split("## Findings to check", 1)[1]
    return {
        "kept": FileReview.model_validate_json(findings).model_dump()["findings"],
        "dropped": [],
    }


def test_a_verifier_that_keeps_everything_cannot_pass_an_unchanged_line(demo: Path) -> None:
    files = parse_diff(git_diff(demo, DEMO_BASE))
    crew = make_crew(fake_planner(), fake_worker())
    lax = Agent(
        "verifier",
        FunctionModel(_keep_everything, name="lax"),
        output_type=VerifiedFindings,
    )
    crew = Crew(lead=crew.lead, reviewer=crew.reviewer, verifier=lax)
    orchestrator = Orchestrator(planner=crew.lead, workers=[crew.reviewer, lax], memory=None)
    result = orchestrator.execute_sync(build_graph(files, crew), budget=Budget(usd=BUDGET_USD))
    verified = result.tasks[task_ids(files)["shop/users.py"].verify].output
    assert isinstance(verified, VerifiedFindings)
    assert ("shop/users.py", 5) in [(f.file, f.line) for f in verified.kept]
    collected = result.tasks["collect"].output
    assert isinstance(collected, VerifiedReview)
    assert _where(collected.findings) == sorted(SEEDED)
    assert isinstance(result.output, Review)
    assert _where(result.output.findings) == sorted(SEEDED)


def test_the_fake_verifier_drops_a_finding_whose_code_is_not_on_its_line(demo: Path) -> None:
    [users] = [f for f in parse_diff(git_diff(demo, DEMO_BASE)) if f.path == "shop/users.py"]
    lines = parse_rendered(render_hunks(users))
    claims = [
        Finding(
            file="shop/users.py",
            line=25,
            severity="major",
            message="`eval(query)` runs arbitrary code",
            suggestion="do not eval",
        ),
        Finding(
            file="shop/users.py",
            line=25,
            severity="minor",
            message="`fetchone()` may return None",
            suggestion="check it",
        ),
        Finding(
            file="shop/other.py",
            line=25,
            severity="minor",
            message="`row` is unused",
            suggestion="-",
        ),
    ]
    verdict = verify_findings("shop/users.py", lines, FileReview(findings=claims))
    assert verdict.kept == [claims[1]]
    assert [d.reason for d in verdict.dropped] == [
        "the diff does not support it: line 25 does not contain the code",
        "it names shop/other.py, but this diff is of shop/users.py",
    ]


def test_the_diff_parser_numbers_changed_lines_and_skips_deleted_files() -> None:
    text = "\n".join(
        [
            "diff --git a/app.py b/app.py",
            "--- a/app.py",
            "+++ b/app.py",
            "@@ -1,4 +1,4 @@ def f():",
            " a = 1",
            "-b = 2",
            "+b = 3",
            " c = 3",
            " d = 4",
            "@@ -10,2 +10,3 @@",
            " x = 1",
            "+y = 2",
            " z = 3",
            "\\ No newline at end of file",
            "diff --git a/gone.py b/gone.py",
            "deleted file mode 100644",
            "--- a/gone.py",
            "+++ /dev/null",
            "@@ -1 +0,0 @@",
            "-print('bye')",
            'diff --git "a/we\\"ird.py" "b/we\\"ird.py"',
            "new file mode 100644",
            "--- /dev/null",
            '+++ "b/we\\"ird.py"',
            "@@ -0,0 +1 @@",
            "+new = True",
        ]
    )
    files = parse_diff(text)
    assert [f.path for f in files] == ["app.py", 'we"ird.py']
    app = files[0]
    assert app.added_lines == {2, 11}
    assert (app.added, app.removed) == (2, 1)
    assert app.line(12) == "z = 3"
    assert files[1].added_lines == {1}
    rendered = render_hunks(app)
    assert "+    2 | b = 3" in rendered
    assert "-      | b = 2" in rendered
    assert [(s.kind, s.number) for s in parse_rendered(rendered)] == [
        (" ", 1),
        ("-", None),
        ("+", 2),
        (" ", 3),
        (" ", 4),
        (" ", 10),
        ("+", 11),
        (" ", 12),
    ]
