"""The review as a static task graph: a mini reviewer and verifier per file, then the planner.

    review:<file> ─▶ verify:<file> ─┐
    review:<file> ─▶ verify:<file> ─┼─▶ collect ─▶ synthesis ─▶ final
    ...                             ┘    (code)     (planner)    (code)

- `review:<file>` (mini worker): the file's hunks with line numbers → `FileReview`.
- `verify:<file>` (mini worker): the same hunks and the reviewer's findings → `VerifiedFindings`,
  the findings it keeps and those it drops as unfounded (not on an added line, or not what the
  line says). A `verify=` judge can only pass or reject a whole answer; dropping single findings
  takes a task of its own.
- `collect` (Python, no model): the kept findings of every file, after a last check that each is
  one the reviewer made, on an added line of its file.
- `synthesis` (the planner's reasoning model): the review from the verified findings only.
- `final` (Python): the planner's review with every finding checked against the verified ones
  and the sections in severity order, critical first.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass

from code_review.findings import (
    SEVERITIES,
    FileReview,
    FileStat,
    Finding,
    Review,
    Section,
    Severity,
    VerifiedFindings,
    VerifiedReview,
    severity_rank,
)
from code_review.gitdiff import FileDiff, render_hunks
from delegate import Agent, Model, TaskContext, TaskGraph

__all__ = [
    "DIFF_HEADING",
    "FINDINGS_HEADING",
    "VERIFIED_HEADING",
    "Crew",
    "TaskIds",
    "build_graph",
    "make_crew",
    "task_ids",
]

DIFF_HEADING = "## Diff of "
FINDINGS_HEADING = "## Findings to check"
VERIFIED_HEADING = "## Verified findings"

_LEGEND = (
    "Each line of the diff is shown as `<marker><number> | <code>`: marker `+` for an added or "
    "changed line, a space for unchanged context, `-` for a removed line (which has no number: "
    "it is not in the new file). Numbers are line numbers in the new version of the file."
)

REVIEWER_INSTRUCTIONS = f"""You review one file's diff for real defects: bugs, security holes,
resource leaks, concurrency mistakes, leftover debug code. {_LEGEND}

Report findings only on added lines (`+`), with the line number shown. For each: severity
"critical" (must not ship: security, data loss), "major" (a bug), "minor" (worth fixing) or
"info" (a note); a message that first quotes the code it is about in backticks, then says what
is wrong; a concrete suggestion. Do not report style or unchanged code. No defect: no finding."""

VERIFIER_INSTRUCTIONS = f"""You check another reviewer's findings on one file's diff and drop
the unfounded ones. {_LEGEND}

Keep a finding only if all hold: it names this file; its line is an added line (`+`) of the diff;
the code it quotes is on that line; and the diff supports what it says. Drop every other finding,
with a one-line reason. Do not add findings and do not change the ones you keep."""

LEAD_INSTRUCTIONS = """You are the lead reviewer. From verified findings on a change, write the
review its author will read: a verdict ("request changes" if anything is critical or major, else
"approve"), a summary of two to four sentences (what must change, and why), and the findings
grouped by severity, critical first, then major, minor, info; leave out empty severities. Use
only the findings given: do not add any. You may merge duplicates and sharpen the wording."""

REVIEW_PROMPT = """Review the change to `{{ path }}`.

## Diff of {{ path }}
{{ diff }}"""

VERIFY_PROMPT = """Check the findings of a review of `{{ path }}` against its diff.

## Diff of {{ path }}
{{ diff }}

## Findings to check
{{ deps[review_id] }}"""

SYNTHESIS_PROMPT = """Write the review of this change.

## Verified findings
{{ collect }}"""


@dataclass(frozen=True, slots=True)
class Crew:
    """The three agents of a review: the planner's lead, and two mini workers."""

    lead: Agent
    reviewer: Agent
    verifier: Agent


def make_crew(planner: Model | str, worker: Model | str) -> Crew:
    """The lead on `planner` (a reasoning model), the reviewer and verifier on `worker`.

    Args:
        planner: a litellm model string such as "openai/o4-mini", or a `Model` (a fake, a
            simulated model).
        worker: the mini model, such as "openai/gpt-4o-mini".
    """
    return Crew(
        lead=Agent(
            "lead",
            planner,
            instructions=LEAD_INSTRUCTIONS,
            description="Writes the review from verified findings.",
            output_type=Review,
            reasoning_effort="low",
            max_output_tokens=8000,
        ),
        reviewer=Agent(
            "reviewer",
            worker,
            instructions=REVIEWER_INSTRUCTIONS,
            description="Reviews one file's diff.",
            output_type=FileReview,
            max_output_tokens=1500,
            temperature=0.0,
        ),
        verifier=Agent(
            "verifier",
            worker,
            instructions=VERIFIER_INSTRUCTIONS,
            description="Drops unfounded findings.",
            output_type=VerifiedFindings,
            max_output_tokens=1500,
            temperature=0.0,
        ),
    )


@dataclass(frozen=True, slots=True)
class TaskIds:
    """The ids of one file's two tasks."""

    review: str
    verify: str


def task_ids(files: Sequence[FileDiff]) -> dict[str, TaskIds]:
    """Task ids by file path: `review:<path>` and `verify:<path>`, made safe and unique."""
    ids: dict[str, TaskIds] = {}
    taken: set[str] = set()
    for file in files:
        slug = re.sub(r"[^A-Za-z0-9_.\-]", "_", file.path)[-150:]
        unique, n = slug, 1
        while unique in taken:
            n += 1
            unique = f"{slug}-{n}"
        taken.add(unique)
        ids[file.path] = TaskIds(f"review:{unique}", f"verify:{unique}")
    return ids


def build_graph(files: Sequence[FileDiff], crew: Crew) -> TaskGraph:
    """The review of `files` (at least one) as a `TaskGraph`; its output is the final `Review`."""
    graph = TaskGraph()
    ids = task_ids(files)
    verifies = []
    for file in files:
        names = {"path": file.path, "diff": render_hunks(file)}
        review = graph.add(
            ids[file.path].review, agent=crew.reviewer, prompt=REVIEW_PROMPT, variables=names
        )
        verifies.append(
            graph.add(
                ids[file.path].verify,
                agent=crew.verifier,
                prompt=VERIFY_PROMPT,
                deps=[review],
                variables={**names, "review_id": review.id},
            )
        )
    reviews = [ids[file.path].review for file in files]
    collect = graph.add(
        "collect", fn=functools.partial(collect_verified, files), deps=[*reviews, *verifies]
    )
    synthesis = graph.add("synthesis", agent=crew.lead, prompt=SYNTHESIS_PROMPT, deps=[collect])
    graph.add("final", fn=finalize, deps=[synthesis, collect])
    return graph


def collect_verified(files: Sequence[FileDiff], ctx: TaskContext) -> VerifiedReview:
    """The findings the verifiers kept, each one the reviewer made, on an added line of its file.

    The verifier is a model too: this check in code makes sure nothing it kept by mistake, or
    wrote itself, reaches the planner.
    """
    ids = task_ids(files)
    kept: dict[tuple[str, int, str], Finding] = {}
    for file in files:
        proposed: FileReview = ctx.deps[ids[file.path].review]
        verified: VerifiedFindings = ctx.deps[ids[file.path].verify]
        made = {(f.line, _words(f.message)): f for f in proposed.findings}
        for finding in verified.kept:
            # The reviewer's own finding, not the verifier's copy of it.
            original = made.get((finding.line, _words(finding.message)))
            if original and original.file == file.path and original.line in file.added_lines:
                kept.setdefault((file.path, original.line, original.message), original)
    order = sorted(kept.values(), key=lambda f: (severity_rank(f.severity), f.file, f.line))
    stats = [FileStat(path=f.path, added=f.added, removed=f.removed) for f in files]
    return VerifiedReview(files=stats, findings=order)


def finalize(ctx: TaskContext) -> Review:
    """The planner's review, keeping only verified findings, in sections critical first."""
    review: Review = ctx.deps["synthesis"]
    verified: VerifiedReview = ctx.deps["collect"]
    allowed = {(finding.file, finding.line) for finding in verified.findings}
    grouped: dict[Severity, list[Finding]] = {severity: [] for severity in SEVERITIES}
    seen: set[tuple[str, int, str]] = set()
    for section in review.sections:
        for finding in section.findings:
            key = (finding.file, finding.line, finding.message)
            if (finding.file, finding.line) in allowed and key not in seen:
                seen.add(key)
                grouped[section.severity].append(
                    finding.model_copy(update={"severity": section.severity})
                )
    sections = [
        Section(severity=severity, findings=sorted(found, key=lambda f: (f.file, f.line)))
        for severity, found in grouped.items()
        if found
    ]
    blocking = any(section.severity in ("critical", "major") for section in sections)
    verdict = "request changes" if blocking else review.verdict
    return Review(verdict=verdict, summary=review.summary, sections=sections)


def _words(text: str) -> str:
    return " ".join(text.split())
