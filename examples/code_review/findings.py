"""What the review's tasks answer: findings, the verifiers' verdicts, and the final review.

Every model task of the graph has one of these as its `output_type`, so each answer is JSON that
validates against its schema (a mini model that answers badly is asked again once).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Severity = Literal["critical", "major", "minor", "info"]

SEVERITIES: tuple[Severity, ...] = ("critical", "major", "minor", "info")
"""Most severe first: the order of the review's sections."""


def severity_rank(severity: Severity) -> int:
    """0 for critical, up to 3 for info."""
    return SEVERITIES.index(severity)


class Finding(BaseModel):
    """One problem in one changed line.

    Attributes:
        file: the file's path in the repository, as the diff names it.
        line: the line's number in the new version of the file.
        severity: critical (must not ship), major (a bug), minor (worth fixing), info (a note).
        message: what is wrong, quoting the code it is about in backticks.
        suggestion: how to fix it.
    """

    file: str
    line: int = Field(ge=1)
    severity: Severity
    message: str
    suggestion: str

    @property
    def where(self) -> str:
        """`file:line`."""
        return f"{self.file}:{self.line}"


class FileReview(BaseModel):
    """A reviewer's answer for one file: its findings, possibly none."""

    findings: list[Finding]


class DroppedFinding(BaseModel):
    """A finding a verifier rejected, and why."""

    finding: Finding
    reason: str


class VerifiedFindings(BaseModel):
    """A verifier's answer for one file: the findings it keeps, and those it drops."""

    kept: list[Finding]
    dropped: list[DroppedFinding]


class FileStat(BaseModel):
    """One changed file: lines added and removed."""

    path: str
    added: int
    removed: int


class VerifiedReview(BaseModel):
    """What the planner reviews from: the changed files and the verified findings only."""

    files: list[FileStat]
    findings: list[Finding]


class Section(BaseModel):
    """The review's findings of one severity."""

    severity: Severity
    findings: list[Finding]


class Review(BaseModel):
    """The review, as the planner writes it.

    Attributes:
        verdict: "request changes" when anything critical or major was found.
        summary: two to four sentences for the author: what the change does, what must change.
        sections: findings grouped by severity, critical first; severities with no finding are
            left out.
    """

    verdict: Literal["approve", "request changes"]
    summary: str
    sections: list[Section]

    @property
    def findings(self) -> list[Finding]:
        """Every finding of the review, section by section."""
        return [finding for section in self.sections for finding in section.findings]
