"""Offline stand-ins for the two models, answering from the prompt they are actually given.

- The mini model, as **reviewer**, reads the hunks from its prompt and runs the pattern checks of
  `rules` on them — which find the demo's seeded bugs, and one unfounded finding (an import on a
  context line); as **verifier**, it keeps a finding only if its line is an added line of the
  diff and the code it quotes first is on that line, and drops the others with the reason.
- The reasoning model, as **lead**, groups the verified findings by severity, critical first,
  and writes a verdict and a summary from them.

Both are `delegate.testing.FunctionModel`s under the real models' names and prices (litellm's cost
map), so token counts, costs and budgets are those of a real run of the same prompts.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from code_review.findings import (
    SEVERITIES,
    DroppedFinding,
    FileReview,
    Finding,
    Review,
    Section,
    VerifiedFindings,
    VerifiedReview,
)
from code_review.gitdiff import ShownLine, parse_rendered
from code_review.pipeline import DIFF_HEADING, FINDINGS_HEADING, VERIFIED_HEADING
from code_review.rules import review_lines
from delegate import ModelRequest, Price
from delegate.testing import FunctionModel, simulate

__all__ = ["fake_planner", "fake_worker", "verify_findings"]

_QUOTED = re.compile(r"`([^`]+)`")
WORKER_LATENCY = 0.1
PLANNER_LATENCY = 0.4


def _price(model: str) -> Price:
    price = simulate(model).price  # litellm's cost map, read without importing litellm
    if price is None:
        raise SystemExit(
            f"model {model!r} has no price in litellm's cost map, so the offline run cannot "
            "cost it; pick another model (--planner/--worker), e.g. openai/gpt-4o-mini"
        )
    return price


def fake_worker(model: str = "openai/gpt-4o-mini") -> FunctionModel:
    """The mini model: reviewer or verifier, by the output type it is asked for."""

    def answer(request: ModelRequest) -> dict[str, Any]:
        prompt = request.messages[-1]["content"]
        path = _first_quoted(prompt)
        if request.output_name == VerifiedFindings.__name__:
            diff, findings = prompt.split(FINDINGS_HEADING, 1)
            proposed = FileReview.model_validate_json(findings.strip())
            return verify_findings(path, parse_rendered(diff), proposed).model_dump()
        lines = parse_rendered(prompt.split(DIFF_HEADING, 1)[1])
        return FileReview(findings=review_lines(path, lines)).model_dump()

    price = _price(model)
    return FunctionModel(
        answer,
        latency=WORKER_LATENCY,
        input_price=price.input_per_mtok,
        output_price=price.output_per_mtok,
        name=model,
    )


def verify_findings(path: str, lines: list[ShownLine], review: FileReview) -> VerifiedFindings:
    """Keep the findings on an added line of `path` whose first quoted code is on that line."""
    added = {line.number: line.text for line in lines if line.kind == "+"}
    shown = {line.number: line.text for line in lines if line.number is not None}
    kept: list[Finding] = []
    dropped: list[DroppedFinding] = []
    for finding in review.findings:
        quoted = _QUOTED.search(finding.message)
        if finding.file != path:
            reason = f"it names {finding.file}, but this diff is of {path}"
        elif finding.line not in added:
            where = "unchanged context" if finding.line in shown else "not in the diff"
            reason = f"line {finding.line} is not an added or changed line ({where})"
        elif quoted is None or _squash(quoted[1]) not in _squash(added[finding.line]):
            reason = f"the diff does not support it: line {finding.line} does not contain the code"
        else:
            kept.append(finding)
            continue
        dropped.append(DroppedFinding(finding=finding, reason=reason))
    return VerifiedFindings(kept=kept, dropped=dropped)


def fake_planner(model: str = "openai/o4-mini") -> FunctionModel:
    """The reasoning model as the lead reviewer: the review from the verified findings."""

    def answer(request: ModelRequest) -> dict[str, Any]:
        prompt = request.messages[-1]["content"]
        verified = VerifiedReview.model_validate_json(prompt.split(VERIFIED_HEADING, 1)[1])
        return write_review(verified).model_dump()

    price = _price(model)
    return FunctionModel(
        answer,
        latency=PLANNER_LATENCY,
        input_price=price.input_per_mtok,
        output_price=price.output_per_mtok,
        name=model,
    )


def write_review(verified: VerifiedReview) -> Review:
    """Sections by severity, critical first; a verdict; a summary that names what blocks."""
    sections = [
        Section(
            severity=severity,
            findings=sorted(
                (f for f in verified.findings if f.severity == severity),
                key=lambda f: (f.file, f.line),
            ),
        )
        for severity in SEVERITIES
    ]
    sections = [section for section in sections if section.findings]
    counts = Counter(finding.severity for finding in verified.findings)
    added = sum(file.added for file in verified.files)
    removed = sum(file.removed for file in verified.files)
    summary = [
        f"The change touches {_count(len(verified.files), 'file')} (+{added} −{removed} lines).",
        f"{_count(len(verified.findings), 'finding')} survived verification: "
        + ", ".join(f"{counts[s]} {s}" for s in SEVERITIES if counts[s])
        + "."
        if verified.findings
        else "No finding survived verification.",
    ]
    blocking = [f for f in verified.findings if f.severity in ("critical", "major")]
    if blocking:
        fixes = "; ".join(f"{f.message.split(':', 1)[0]} ({f.where})" for f in blocking)
        summary.append(f"Fix before merging: {fixes}.")
    else:
        summary.append("Nothing blocks the merge.")
    return Review(
        verdict="request changes" if blocking else "approve",
        summary=" ".join(summary),
        sections=sections,
    )


def _first_quoted(prompt: str) -> str:
    found = _QUOTED.search(prompt)
    if found is None:
        raise ValueError("the prompt names no file in backticks; is it a review prompt?")
    return found[1]


def _squash(text: str) -> str:
    return "".join(text.split())


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
