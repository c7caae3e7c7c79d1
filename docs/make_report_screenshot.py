"""Make docs/report.png: the report of an example run, rendered in headless Chromium.

    .venv/bin/python docs/make_report_screenshot.py [--html docs/report.html]

The run is offline: a planned run with fakes standing in for o4-mini (the planner) and
gpt-4o-mini (the workers), with their prices and made-up latencies. One task fails for good
and is replanned, one hits a rate limit and is retried, one is judged; the run is kept in a
temporary SQLite store and reported from there, as `delegate report` does. Needs Chromium
(`apt install chromium`) and Playwright (the dev extra); nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from delegate import Agent, Budget, Orchestrator
from delegate.agents.models import ModelRequest
from delegate.errors import PermanentModelError, RateLimitError
from delegate.memory.store import Store
from delegate.observe import stored_report_html
from delegate.testing import FunctionModel

HERE = Path(__file__).resolve().parent

PLAN = {
    "tasks": [
        {"id": "customers", "agent": "scout", "instructions": "Who buys home batteries?"},
        {"id": "competitors", "agent": "scout", "instructions": "Who sells them, at what price?"},
        {"id": "regulation", "agent": "scout", "instructions": "Which subsidies and rules apply?"},
        {"id": "prices", "agent": "analyst", "instructions": "Chart price per kWh since 2020."},
        {
            "id": "sizing",
            "agent": "analyst",
            "instructions": "Size the market from the findings.",
            "deps": ["customers", "competitors"],
        },
        {
            "id": "risks",
            "agent": "analyst",
            "instructions": "List the main risks.",
            "deps": ["regulation", "competitors"],
        },
        {
            "id": "brief",
            "agent": "writer",
            "instructions": "Write a one-page brief.",
            "deps": ["sizing", "risks", "prices"],
        },
    ],
    "synthesis_note": "Lead with the market size.",
}
REPLAN = {
    "tasks": [
        {
            "id": "prices_from_reports",
            "agent": "analyst",
            "instructions": "Take price per kWh from the competitors' findings instead.",
            "deps": ["competitors"],
        },
        {
            "id": "brief_v2",
            "agent": "writer",
            "instructions": "Write a one-page brief.",
            "deps": ["sizing", "risks", "prices_from_reports"],
        },
    ],
    "synthesis_note": "Lead with the market size.",
}
LATENCY = {"customers": 1.2, "competitors": 2.0, "regulation": 0.9, "sizing": 1.4, "risks": 1.1}


def _task_of(request: ModelRequest) -> str:
    prompt = str(request.messages[-1]["content"])
    for plan in (PLAN, REPLAN):
        for task in plan["tasks"]:
            if str(task["instructions"]) in prompt:
                return str(task["id"])
    return "?"


def example_run(db: str) -> str:
    """Run the example, kept in the store at `db`; returns its run id."""
    plans = [PLAN, REPLAN]
    flaky = {"regulation": 1}

    def reasoner(request: ModelRequest) -> str:
        if request.output_name == "Plan":
            return json.dumps(plans.pop(0))
        return "Home batteries: a $4.1 bn market by 2030, led by retrofit buyers."

    def worker(request: ModelRequest) -> str:
        task = _task_of(request)
        if task == "prices":
            raise PermanentModelError("the price series has no data before 2022")
        if flaky.get(task):
            flaky[task] -= 1
            raise RateLimitError("rate limited (429): slow down", retry_after=0.2)
        return f"Findings for {task}: " + "a well-sourced paragraph. " * 12

    def latency(request: ModelRequest) -> float:
        return LATENCY.get(_task_of(request), 0.6) / 4

    o4_mini = FunctionModel(
        reasoner, input_price=1.1, output_price=4.4, name="o4-mini", latency=0.3
    )
    mini = FunctionModel(
        worker, input_price=0.15, output_price=0.6, name="gpt-4o-mini", latency=latency
    )
    orch = Orchestrator(
        planner=Agent("planner", o4_mini),
        workers=[
            Agent("scout", mini, description="Fast web research."),
            Agent("analyst", mini, description="Numbers and sizing."),
            Agent("writer", mini, description="Clear prose."),
        ],
        memory=db,
    )
    result = orch.run_sync(
        "Brief me on the home battery market.",
        {"market": "home batteries"},
        budget=Budget(usd=0.05),
    )
    return result.run_id


def main() -> int:
    """Make the screenshot (and, with --html, keep the page)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--html", type=Path, help="also write the report's HTML here")
    parser.add_argument("--out", type=Path, default=HERE / "report.png")
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("no Chromium on PATH: apt install chromium", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as folder:
        db = f"sqlite:///{Path(folder) / 'runs.db'}"
        run_id = example_run(db)
        with Store.open(db) as store:
            page_html = stored_report_html(store, run_id)
        path = Path(folder) / "report.html"
        path.write_text(page_html, encoding="utf-8")
        if args.html:
            args.html.write_text(page_html, encoding="utf-8")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 1500})
            page.goto(path.as_uri())
            page.screenshot(path=str(args.out))
            browser.close()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
