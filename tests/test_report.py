"""The run report: one self-contained HTML file, from a RunResult or a stored run, checked by
parsing it and by rendering it in a real headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from _backends import store_url  # noqa: F401 - a fixture
from click.testing import CliRunner

from delegate import Agent, Orchestrator, TaskGraph
from delegate.agents.models import ModelRequest, Usage
from delegate.cli import main
from delegate.errors import PermanentModelError, RateLimitError
from delegate.memory.store import Store
from delegate.observe import report_html, stored_report_html
from delegate.observe._report_svg import esc
from delegate.observe.report import usd
from delegate.orchestrator.results import RunResult, RunUsage, TaskResult
from delegate.testing import FunctionModel, ScriptedModel

HOSTILE = (
    "</script><script>window.__pwned = 1</script>"
    '<img src="x" onerror="window.__pwned = 2"><a href="https://evil.example/">click</a>'
    "</pre></details><style>body{background:url(https://evil.example/x.png)}</style>"
)
SECRET = "sk-proj-" + "Zq9" * 12  # a credential-looking value a model echoed


class Page(HTMLParser):
    """The parts of a report the tests read: elements with their attributes, text, scripts."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.scripts: list[str] = []
        self.styles: list[str] = []
        self.text: list[str] = []
        self._in: str | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {name: value or "" for name, value in attrs}))
        if tag in ("script", "style"):
            self._in = tag
            (self.scripts if tag == "script" else self.styles).append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == self._in:
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "script":
            self.scripts[-1] += data
        elif self._in == "style":
            self.styles[-1] += data
        else:
            self.text.append(data)

    def having(self, attribute: str) -> list[dict[str, str]]:
        return [attrs for _, attrs in self.elements if attribute in attrs]

    def by_id(self, element_id: str) -> dict[str, str]:
        [found] = [attrs for _, attrs in self.elements if attrs.get("id") == element_id]
        return found

    def tags(self, name: str) -> list[dict[str, str]]:
        return [attrs for tag, attrs in self.elements if tag == name]

    @property
    def all_text(self) -> str:
        return "".join(self.text)


def _outside_urls(page: Page, text: str) -> list[str]:
    """Every resource or link URL that leaves the file: src/href/xlink:href attributes and
    CSS url(...) values that are not a fragment."""
    found = [
        value
        for _, attrs in page.elements
        for name, value in attrs.items()
        if name in ("src", "href", "xlink:href", "action", "srcset") and not value.startswith("#")
    ]
    found += re.findall(r"url\(\s*['\"]?(?!#)([^)'\"]*)", "".join(page.styles))
    found += re.findall(r"style=\"[^\"]*url\(\s*['\"]?(?!#)([^)'\"]*)", text)
    return found


# -- a run built by hand: exact times, so an exact critical path ----------------------------

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _task(
    id: str, start: float, end: float, cost: float, deps: tuple[str, ...] = (), **more: Any
) -> TaskResult:
    usage = Usage(input_tokens=100, output_tokens=20, cost_usd=cost, calls=1)
    values: dict[str, Any] = {
        "status": "succeeded",
        "output": f"output of {id}",
        "attempts": 1,
        "agent": "mini",
        "model": "openai/gpt-4o-mini",
    }
    values.update(more)
    return TaskResult(
        id=id,
        deps=deps,
        usage=usage,
        started_at=_at(start),
        finished_at=_at(end),
        **values,
    )


def _hand_made() -> RunResult:
    tasks = {
        "a": _task("a", 0.0, 1.0, 0.001),
        "b": _task("b", 0.0, 3.0, 0.002),
        "d": _task("d", 1.0, 1.5, 0.0005, ("a",)),
        "c": _task("c", 3.0, 4.0, 0.004, ("a", "b"), output=HOSTILE + " " + SECRET),
        "e": _task(
            "e", 1.5, 1.6, 0.0, ("d",), status="failed", output=None, error=f"bad {HOSTILE}"
        ),
    }
    total = Usage(input_tokens=500, output_tokens=100, cost_usd=0.0075, calls=5)
    usage = RunUsage(
        input_tokens=total.input_tokens,
        output_tokens=total.output_tokens,
        cost_usd=total.cost_usd,
        calls=total.calls,
        by_model={"openai/gpt-4o-mini": total},
        by_agent={"mini": total},
        by_role={"workers": total},
        planner_only_usd=0.075,
    )
    return RunResult(
        run_id="hand-made",
        status="partial",
        output="the answer",
        tasks=tasks,
        usage=usage,
        started_at=T0,
        finished_at=_at(4.2),
        error="1 of 5 tasks failed",
    )


def test_every_task_is_in_the_graph_the_timeline_and_the_details_with_its_status() -> None:
    result = _hand_made()
    page = Page(report_html(result))

    nodes = {attrs["data-task"]: attrs["data-status"] for attrs in page.having("data-task")}
    assert nodes == {t.id: t.status for t in result.tasks.values()}
    rows = [attrs["data-row"] for attrs in page.having("data-row")]
    assert rows == ["a", "b", "d", "e", "c"]  # by start time
    details = {a["id"]: a["data-status"] for a in page.tags("details") if "data-status" in a}
    assert details == {f"task-{t.id}": t.status for t in result.tasks.values()}


def test_the_critical_path_is_the_longest_chain_of_running_time_and_is_marked() -> None:
    page = Page(report_html(_hand_made()))

    # b (3 s) then c (1 s) is longer than a → d → e (1.6 s) and a → c (2 s).
    assert [a["data-task"] for a in page.having("data-critical") if "data-task" in a] == [
        "b",
        "c",
    ]
    assert [a["data-row"] for a in page.having("data-critical") if "data-row" in a] == ["b", "c"]
    assert "Critical path (2 tasks, 4.000 s of running time): b → c" in page.all_text


def test_totals_and_the_breakdowns_equal_the_results() -> None:
    result = _hand_made()
    page = Page(report_html(result))

    assert float(page.by_id("total-usd")["data-usd"]) == result.usage.cost_usd
    tokens = page.by_id("total-tokens")
    assert (int(tokens["data-input"]), int(tokens["data-output"])) == (500, 100)
    assert float(page.by_id("planner-only")["data-usd"]) == 0.075
    model_rows = [a for a in page.having("data-model")]
    assert [a["data-model"] for a in model_rows] == ["openai/gpt-4o-mini"]
    task_costs = {
        a["data-cost-task"]: a for a in page.having("data-cost-task")
    }  # sorted by cost, all tasks
    assert list(task_costs) == ["c", "b", "a", "d", "e"]
    assert "$0.00750" in page.all_text  # the total, three significant digits
    assert "this run cost $0.00750, 10% of that (saved $0.0675)" in page.all_text.replace("\n", " ")


def test_a_hostile_output_is_escaped_and_a_secret_is_masked() -> None:
    text = report_html(_hand_made())
    page = Page(text)

    from delegate.observe.report import _SCRIPT

    assert page.scripts == [_SCRIPT]  # the report's own script, and no other
    assert page.tags("img") == []
    assert len(page.styles) == 1
    assert "window.__pwned" not in "".join(page.scripts)
    assert HOSTILE in page.all_text  # shown as text, whole
    assert SECRET not in text
    assert "***" in page.all_text
    assert _outside_urls(page, text) == []


def test_a_known_credential_is_masked_wherever_it_appears(monkeypatch: pytest.MonkeyPatch) -> None:
    key = "k3y" + "Qw8" * 10
    monkeypatch.setenv("ANTHROPIC_API_KEY", key)
    result = _hand_made()
    leaky = result.model_copy(
        update={
            "goal": f"use {key}",
            "error": f"401 for key {key}",
            "tasks": {
                **result.tasks,
                "a": result.tasks["a"].model_copy(update={"output": f"the key is {key}"}),
            },
        }
    )

    text = report_html(leaky)

    assert key not in text
    assert "the key is ***" in Page(text).all_text


def test_no_resource_or_link_leaves_the_file() -> None:
    text = report_html(_hand_made())
    page = Page(text)
    assert _outside_urls(page, text) == []
    [csp] = [a["content"] for a in page.tags("meta") if a.get("http-equiv")]
    assert csp.startswith("default-src 'none';")


# -- real runs ---------------------------------------------------------------------------


def _verdict_or_text(request: ModelRequest) -> str:
    prompt = str(request.messages[-1]["content"])
    if request.output_name == "Verdict":
        return json.dumps({"passed": True, "feedback": ""})
    if "Break." in prompt:
        raise PermanentModelError("cannot parse the table in 'sales.csv'")
    if "Be hostile." in prompt:
        return HOSTILE
    return "notes: " + prompt[-40:]


def _graph_run(db: str) -> tuple[RunResult, TaskGraph]:
    flaky = {"left": 1}

    def respond(request: ModelRequest) -> str:
        if "Search." in str(request.messages[-1]["content"]) and flaky["left"]:
            flaky["left"] -= 1
            raise RateLimitError("slow down", retry_after=0.01)
        return _verdict_or_text(request)

    model = FunctionModel(respond, input_price=0.15, output_price=0.6, name="openai/gpt-4o-mini")
    worker = Agent("researcher", model)
    judge = Agent("judge", FunctionModel(_verdict_or_text, input_price=1.0, name="judge-model"))
    g = TaskGraph()
    search = g.add("search", agent=worker, prompt="Search.")
    draft = g.add("draft", agent=worker, prompt="Draft.", deps=[search], votes=3)
    g.add("review", agent=worker, prompt="Review.", deps=[draft], verify=judge)
    g.add("hostile", agent=worker, prompt="Be hostile.")
    broken = g.add("broken", agent=worker, prompt="Break.")
    g.add("after_broken", agent=worker, prompt="Then.", deps=[broken])
    orch = Orchestrator(workers=[worker, judge], memory=db)
    return orch.execute_sync(g, inputs={}), g


def test_a_stored_run_via_the_cli_writes_the_file(
    tmp_path: Path,
    store_url: str,  # noqa: F811 - the fixture
) -> None:
    db = store_url  # SQLite, and PostgreSQL when one is reachable
    result, _ = _graph_run(db)
    out = tmp_path / "run.html"

    done = CliRunner().invoke(main, ["report", result.run_id, "-o", str(out), "--db", db])

    assert done.exit_code == 0, done.output
    assert done.output.startswith(f"wrote the report of run {result.run_id} to {out} (")
    text = out.read_text(encoding="utf-8")
    page = Page(text)
    assert {a["data-task"] for a in page.having("data-task")} == set(result.tasks)
    statuses = {a["data-task"]: a["data-status"] for a in page.having("data-task")}
    assert statuses == {t.id: t.status for t in result.tasks.values()}
    assert statuses["broken"] == "failed"
    assert statuses["after_broken"] == "skipped"
    assert float(page.by_id("total-usd")["data-usd"]) == result.usage.cost_usd
    # The event log gives the retry's error; the stored graph the votes, the judge, the prompts.
    checks = {a["data-check-task"] for a in page.having("data-check-task")}
    assert checks == {"search", "draft", "review"}
    assert "attempt 1: slow down" in page.all_text
    assert "Search." in page.all_text
    assert "cannot parse the table in 'sales.csv'" in page.all_text
    assert len(page.scripts) == 1
    assert page.tags("img") == []
    assert _outside_urls(page, text) == []
    to_stdout = CliRunner().invoke(main, ["report", result.run_id, "-o", "-", "--db", db])
    assert to_stdout.exit_code == 0
    assert to_stdout.output.startswith("<!DOCTYPE html>")
    assert f"<title>delegate run {result.run_id}</title>" in to_stdout.output


def test_report_of_an_unknown_run_exits_2_and_suggests_a_close_id(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    result, _ = _graph_run(db)
    typo = result.run_id[:-1] + ("0" if result.run_id[-1] != "0" else "1")

    done = CliRunner().invoke(main, ["report", typo, "--db", db, "-o", str(tmp_path / "x.html")])

    assert done.exit_code == 2
    assert f"no run {typo!r} in the store" in done.output
    assert f"(did you mean {result.run_id!r}?)" in done.output
    assert "Traceback" not in done.output
    assert not (tmp_path / "x.html").exists()


def test_a_report_to_a_missing_folder_exits_2(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    result, _ = _graph_run(db)
    target = tmp_path / "nowhere" / "run.html"

    done = CliRunner().invoke(main, ["report", result.run_id, "--db", db, "-o", str(target)])

    assert done.exit_code == 2
    assert f"cannot write the report to {str(target)!r}" in done.output


def test_the_result_and_the_stored_run_agree_and_the_graph_adds_prompts(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    result, graph = _graph_run(db)
    with Store.open(db) as store:
        stored_text = stored_report_html(store, result.run_id)
    bare_text = result.report_html()
    graph_text = result.report_html(graph)

    for text in (stored_text, bare_text, graph_text):
        page = Page(text)
        assert float(page.by_id("total-usd")["data-usd"]) == result.usage.cost_usd
        nodes = {a["data-task"]: a["data-status"] for a in page.having("data-task")}
        assert nodes == {t.id: t.status for t in result.tasks.values()}
    assert bare_text.count("<h4>Prompt</h4>") == 0
    assert graph_text.count("<h4>Prompt</h4>") == stored_text.count("<h4>Prompt</h4>") == 6
    assert "Each retry's error is in the run's event log" in Page(bare_text).all_text


def test_plan_revisions_say_what_changed() -> None:
    plans = iter(
        [
            {
                "tasks": [
                    {"id": "facts", "agent": "scout", "instructions": "Do facts."},
                    {"id": "report", "agent": "scout", "instructions": "Break.", "deps": ["facts"]},
                ]
            },
            {
                "tasks": [
                    {"id": "report_again", "agent": "scout", "instructions": "Do report."},
                ]
            },
        ]
    )

    def reasoner(request: ModelRequest) -> str:
        return json.dumps(next(plans)) if request.output_name == "Plan" else "FINAL"

    planner = Agent("planner", FunctionModel(reasoner, input_price=1.1, output_price=4.4))
    scout = Agent("scout", FunctionModel(_verdict_or_text, input_price=0.15, output_price=0.6))
    orch = Orchestrator(planner=planner, workers=[scout], memory=None)
    result = orch.run_sync("Write about bees.")
    assert [p.reason for p in result.plans] == ["goal", "failures"]

    page = Page(report_html(result))
    revisions = [a["data-revision"] for a in page.having("data-revision")]
    assert revisions == ["1", "2"]
    text = " ".join(page.all_text.split())
    assert "added: report_again" in text
    assert "dropped or replaced: report (failed)" in text
    assert "<li>kept: 1 finished task</li>" in report_html(result)
    assert float(page.by_id("planner-only")["data-usd"]) == result.usage.planner_only_usd
    assert "<h4>Prompt</h4><pre>Do facts.</pre>" in report_html(result)  # from the plan


def test_a_thousand_task_report_stays_under_a_few_megabytes() -> None:
    g = TaskGraph()
    model = FunctionModel(lambda r: "x" * 600, input_price=0.15, output_price=0.6, name="mini")
    worker = Agent("mini", model)
    layers: list[list[Any]] = []
    for layer in range(10):
        row = []
        for index in range(100):
            deps = [layers[-1][index], layers[-1][(index * 7 + 3) % 100]] if layers else []
            row.append(
                g.add(f"t{layer:02d}_{index:03d}", agent=worker, prompt="p" * 300, deps=deps)
            )
        layers.append(row)
    result = Orchestrator(memory=None, max_concurrency=64).execute_sync(g)
    assert len(result.tasks) == 1000

    text = result.report_html(g)

    size = len(text.encode("utf-8"))
    assert size < 4_000_000, size
    page = Page(text)
    assert len(page.having("data-task")) == 1000
    assert len(page.tags("details")) >= 1000


# -- a real browser ------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="no system Chromium (apt install chromium)")
def test_the_report_renders_in_headless_chromium_without_errors_or_requests(
    tmp_path: Path,
) -> None:
    from playwright.sync_api import sync_playwright

    result = _hand_made()
    path = tmp_path / "run.html"
    path.write_text(report_html(result), encoding="utf-8")
    problems: list[str] = []
    outside: list[str] = []

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.on(
                "console",
                lambda m: (
                    problems.append(f"console {m.type}: {m.text}")
                    if m.type in ("error", "warning")
                    else None
                ),
            )
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))

            def route(r: Any) -> None:
                if r.request.url.startswith("file:"):
                    r.continue_()
                else:
                    outside.append(r.request.url)
                    r.abort()

            page.route("**/*", route)
            page.goto(path.as_uri())
            assert outside == []
            assert problems == []
            visible = page.inner_text("body")
            assert page.evaluate("() => window.__pwned === undefined") is True
            # The report's script (allowed by its hash) opens a task's details from the graph.
            page.click('a.node[data-task="c"]', timeout=5_000)
            # The page opens the details on `hashchange`, which fires after the click returns:
            # wait for it (a timeout here fails the test) instead of reading it at once.
            page.wait_for_function(
                "() => document.getElementById('task-c').open === true", timeout=10_000
            )
            assert problems == []
        finally:
            browser.close()

    for task_id in result.tasks:
        assert task_id in visible
    assert usd(result.usage.cost_usd) == "$0.00750"
    assert "$0.00750" in visible


# -- votes and verdicts ------------------------------------------------------------------------


def test_a_stored_run_lists_each_vote_pick_and_verdict_with_escaped_feedback(
    store_url: str,  # noqa: F811 - the fixture
) -> None:
    feedback = f"Cite a source. {HOSTILE} {SECRET}"
    picker = Agent("picker", ScriptedModel([{"index": 2, "reason": "the second is right"}]))
    voter = Agent("voter", ScriptedModel(["Paris", "Lyon", "paris"]), votes=3, verify=picker)
    critic = Agent(
        "critic",
        ScriptedModel([{"passed": False, "feedback": feedback}, {"passed": True, "feedback": ""}]),
    )
    writer = Agent("writer", ScriptedModel(["A draft.", "A draft, with a source."]))
    g = TaskGraph()
    capital = g.add("capital", agent=voter, prompt="Capital?")
    g.add("essay", agent=writer, prompt="Write.", deps=[capital], verify=critic)
    g.add("plain", agent=Agent("plainer", ScriptedModel(["ok"])), prompt="Say ok.")
    result = Orchestrator(memory=store_url).execute_sync(g, inputs={})
    assert result.status == "succeeded", result.error

    with Store.open(store_url) as store:
        text = stored_report_html(store, result.run_id)

    page = Page(text)
    checks = {a["data-check-task"] for a in page.having("data-check-task")}
    assert checks == {"capital", "essay"}
    masked = f"Cite a source. {HOSTILE} sk-***"
    items = re.findall(r'<li data-check="[^"]*".*?</li>', text)
    assert items == [
        '<li data-check="vote">attempt 1: 3 samples voted: split; answer 1 won</li>',
        '<li data-check="pick">attempt 1: judge picker picked answer 2 of 3: '
        '<q class="feedback">the second is right</q></li>',
        '<li data-check="judge" data-passed="false">attempt 1: judge critic rejected the '
        f'answer of writer: <q class="feedback">{esc(masked)}</q></li>',
        '<li data-check="judge" data-passed="true">attempt 1: judge critic passed the answer '
        "of writer</li>",
    ]
    assert masked in page.all_text  # shown as text, never as markup
    assert SECRET not in text
    assert page.tags("img") == []
    assert len(page.scripts) == 1
    # A RunResult alone has no events: no decisions, and a pointer to the stored run's report.
    bare = result.report_html()
    assert 'data-check="' not in bare
    assert "as are the votes and the judges' verdicts" in Page(bare).all_text
