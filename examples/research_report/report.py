"""The report as markdown, and a check of its citations against the corpus.

`render(report, corpus)` writes the title, `## Summary`, one `##` section per finding and
`## Sources` (each listed file with its title). `audit(report, corpus)` says whether every cited
file exists, every section cites one, and the Sources list is exactly the files cited — what a
reader would check by hand, done for every run, live ones included.
"""

from __future__ import annotations

from dataclasses import dataclass

from research_report.corpus import Corpus, citations
from research_report.team import Report


def render(report: Report, corpus: Corpus) -> str:
    """The report as markdown, ending with its `## Sources` list."""
    parts = [f"# {report.title}", f"## Summary\n\n{report.summary}"]
    parts.extend(f"## {section.heading}\n\n{section.body}" for section in report.sections)
    sources = [
        f"- [{file}] {corpus.title(file)}" if file in corpus.documents else f"- [{file}]"
        for file in report.sources
    ]
    parts.append("## Sources\n\n" + "\n".join(sources))
    return "\n\n".join(parts) + "\n"


@dataclass(frozen=True, slots=True)
class Audit:
    """What the citations of a report look like.

    Attributes:
        cited: every file cited in the summary and the sections, in order of first citation.
        unknown: cited or listed files the corpus does not have.
        unlisted: cited files missing from Sources.
        uncited: files in Sources that nothing cites.
        bare_sections: sections (the summary included) that cite no file.
    """

    cited: list[str]
    unknown: list[str]
    unlisted: list[str]
    uncited: list[str]
    bare_sections: list[str]

    @property
    def ok(self) -> bool:
        """True when every citation checks out."""
        return not (self.unknown or self.unlisted or self.uncited or self.bare_sections)

    def describe(self) -> str:
        """One line for the console."""
        if self.ok:
            return (
                f"citations: {len(self.cited)} files cited, all in the corpus and all listed "
                "under Sources; every section cites at least one"
            )
        problems = [
            f"{label}: {', '.join(items)}"
            for label, items in (
                ("not in the corpus", self.unknown),
                ("cited but not under Sources", self.unlisted),
                ("under Sources but never cited", self.uncited),
                ("sections without a citation", self.bare_sections),
            )
            if items
        ]
        return "citations: CHECK FAILED — " + "; ".join(problems)


def audit(report: Report, corpus: Corpus) -> Audit:
    """Check the report's citations against the corpus and its own Sources list."""
    texts = {"Summary": report.summary} | {s.heading: s.body for s in report.sections}
    cited = citations(" ".join(texts.values()))
    listed = list(dict.fromkeys(report.sources))
    return Audit(
        cited=cited,
        unknown=[f for f in dict.fromkeys([*cited, *listed]) if f not in corpus.documents],
        unlisted=[f for f in cited if f not in listed],
        uncited=[f for f in listed if f not in cited],
        bare_sections=[heading for heading, text in texts.items() if not citations(text)],
    )
