"""The team: a reasoning planner, mini-model researchers with corpus tools and shared memory, and a
mini-model writer that turns their findings into a typed `Report`.

The same agents run live, simulated or offline; only their models change (see `models.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, Field

from delegate import Agent, Model, Planner
from delegate.orchestrator import default_prompt
from research_report.corpus import Corpus, corpus_tools


class Finding(BaseModel):
    """A researcher's answer to one question."""

    topic: str = Field(description="A short heading for the question, e.g. 'Cycle life'.")
    question: str = Field(description="The question, as the task asked it.")
    answer: str = Field(
        description="2-4 plain sentences; each ends with the corpus file(s) it comes from in "
        "brackets, e.g. 'LFP cells last 3,000 to 6,000 cycles. [batteries-lfp.md]'."
    )
    sources: list[str] = Field(description="The corpus files cited in the answer.")
    from_memory: list[str] = Field(
        default_factory=list,
        description="The shared-memory keys whose findings the answer reuses (empty if none).",
    )


class Section(BaseModel):
    """One section of the report."""

    heading: str
    body: str = Field(description="Paragraphs that keep the findings' [file.md] citations.")


class Report(BaseModel):
    """The final report: the writer's structured answer, rendered to markdown by `report.py`."""

    title: str
    summary: str = Field(description="3-5 sentences with [file.md] citations.")
    sections: list[Section] = Field(description="One section per finding, in plan order.")
    sources: list[str] = Field(description="Every corpus file cited, in order of first citation.")


RESEARCHER_INSTRUCTIONS = """\
You answer one research question about home energy storage from a local corpus of documents.
If the task names a shared-memory key that already holds a finding, recall it and reuse it: put
the key in from_memory and cite the files the finding cites; search the corpus only for what it
lacks. Otherwise call search_corpus with a few keywords, read the most relevant one or two
documents with read_document, and answer in 2-4 plain sentences taken from what you read. End
every sentence with the file it comes from in brackets, e.g. [batteries-lfp.md]; cite only files
you read or that a reused finding cites. Before your final answer, save it with remember under the
key the task gives (else finding/<topic-in-a-few-words>) and with scope "workflow", so later runs
of this workflow can reuse it."""

WRITER_INSTRUCTIONS = """\
You write a short research report from the findings of a team of researchers. Give it the goal as
its title, a summary of 3-5 sentences, then one section per finding in the order given, headed by
the finding's topic. Use only what the findings say, and keep their citations exactly as written,
e.g. [batteries-lfp.md], at the end of each sentence they support; every section and the summary
cite at least one file. List in sources every file you cite, in order of first citation, and no
other."""

RESEARCHER_DESCRIPTION = (
    "Answers one research question from the local corpus on home energy storage (chemistries, "
    "costs, safety, codes, regulation, recycling), citing the files it read. It can recall and "
    "remember findings in shared memory."
)

PLANNING_NOTES = """

## For this team

- Plan 3 to 5 independent research questions, one `researcher` task each, with no dependencies:
  a writer turns their findings into the report after them.
- Give every task a memory key `finding/<topic>` (lowercase words joined by hyphens) and end its
  instructions with: "Save your finding with remember under the key `finding/<topic>`, with
  scope `workflow`."
- When "Relevant memory" above holds a finding that answers one of the questions, keep the
  question and write in its instructions: "Shared memory already holds `finding/<topic>` from an
  earlier run: recall it and reuse it instead of searching the corpus again."
"""


@dataclass(frozen=True, slots=True)
class Team:
    """The agents of one run."""

    planner: Planner
    researcher: Agent
    writer: Agent


def build_team(
    planner: Model | str, worker: Model | str, writer: Model | str, corpus: Corpus
) -> Team:
    """The planner, the researcher and the writer on the given models.

    Args:
        planner: the reasoning model that plans the questions.
        worker: the mini model the researchers run on.
        writer: the model that writes the report (the worker's, by default in `main.py`).
        corpus: the documents the researchers' tools search and read.
    """
    planner_agent = Agent("planner", planner, reasoning_effort="medium", max_output_tokens=6000)
    researcher = Agent(
        "researcher",
        worker,
        instructions=RESEARCHER_INSTRUCTIONS,
        description=RESEARCHER_DESCRIPTION,
        tools=corpus_tools(corpus),
        output_type=Finding,
        memory=True,
        max_output_tokens=800,
        max_tool_rounds=6,
        temperature=0.2,
    )
    writer_agent = Agent(
        "writer",
        writer,
        instructions=WRITER_INSTRUCTIONS,
        output_type=Report,
        max_output_tokens=2000,
        temperature=0.3,
    )
    return Team(
        planner=Planner(planner_agent, max_tasks=6, prompt=default_prompt() + PLANNING_NOTES),
        researcher=researcher,
        writer=writer_agent,
    )
