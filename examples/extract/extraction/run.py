"""One extraction run: wire the models, execute the graph under a budget, collect the results."""

from __future__ import annotations

from dataclasses import dataclass

from delegate import Budget, Orchestrator, RunResult
from extraction.audit import CallLog, Vote, votes
from extraction.documents import Document
from extraction.pipeline import Models, build_agents, build_graph, extracted
from extraction.schema import Invoice, Review


@dataclass(frozen=True, slots=True)
class ExtractRun:
    """Everything one run produced.

    Attributes:
        result: the orchestrator's `RunResult` (tasks, usage by role, `planner_only_usd`).
        budget: the run's budget.
        documents: the documents, in order.
        invoices: the extraction of each document whose task succeeded, by document name.
        review: the reviewer's findings (None when the review did not run).
        votes: how each document's samples voted, and the judge's verdicts.
        log: every model call, by agent and document.
        planner: the planner's model (the reviewer's).
        worker: the mini workers' model (the extractor's and the judge's).
        samples: the extractions sampled per document (`votes`).
    """

    result: RunResult
    budget: Budget
    documents: list[Document]
    invoices: dict[str, Invoice]
    review: Review | None
    votes: dict[str, Vote]
    log: CallLog
    planner: str
    worker: str
    samples: int


def run_extraction(
    documents: list[Document],
    models: Models,
    *,
    budget: Budget,
    votes_per_document: int = 3,
    max_concurrency: int = 8,
) -> ExtractRun:
    """Extract every document on the worker model, then have the planner's model review them.

    The reviewer is given to the orchestrator as its `planner`, so its calls are reported as the
    planner's role and `result.usage.planner_only_usd` prices every token of the run at its model.
    """
    log = CallLog()
    logged = Models(
        extractor=log.wrap(models.extractor, "extractor"),
        judge=log.wrap(models.judge, "judge"),
        reviewer=log.wrap(models.reviewer, "reviewer"),
    )
    agents = build_agents(logged, votes=votes_per_document)
    orchestrator = Orchestrator(
        planner=agents.reviewer,
        memory=None,  # a one-off batch: nothing to resume or share
        max_concurrency=max_concurrency,
        seed=1,
    )
    result = orchestrator.execute_sync(build_graph(documents, agents), budget=budget)
    review = result.tasks["review"].output
    return ExtractRun(
        result=result,
        budget=budget,
        documents=documents,
        invoices=extracted({d.name: result.tasks[d.name].output for d in documents}),
        review=review if isinstance(review, Review) else None,
        votes=votes(log, [d.name for d in documents]),
        log=log,
        planner=models.reviewer.name,
        worker=models.extractor.name,
        samples=votes_per_document,
    )
