"""`delegate.evals`: datasets, scorers, `evaluate` under one shared budget, the HTML page, and
the dataset shipped with the invoice-extraction example."""

from __future__ import annotations

import inspect
import json
import re
import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from delegate import Agent, Budget, Orchestrator
from delegate.agents.models import ModelRequest, ModelResponse, Usage
from delegate.errors import ConfigError, PermanentModelError
from delegate.evals import (
    SIMULATED_WARNING,
    Case,
    Configuration,
    Dataset,
    DatasetError,
    Score,
    contains,
    eval_report_html,
    evaluate,
    evaluate_sync,
    exact,
    field_equals,
    json_schema,
    judge,
    percentile,
    regex,
)
from delegate.testing import FunctionModel

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent
EXTRACT = ROOT / "examples" / "extract"

# A fake call's usage, stated by the model itself (so the test can count the cost without
# delegate): 10 prompt tokens (fewer than any prompt here, so never above what was reserved)
# and `output` answer tokens (250 by default), at $1 / $2 per million tokens.
PRICES = {"input_price": 1.0, "output_price": 2.0}


def call_usd(output: int = 250) -> float:
    return 10 * 1e-6 + output * 2e-6


CALL_USD = call_usd()  # $0.00051


def case(inputs: Any = None, expected: Any = None, **extra: Any) -> Case:
    return Case(inputs=inputs or {}, expected=expected, **extra)


class Counter:
    """A fake model's own count of the calls it answered: the independent spend counter."""

    def __init__(self) -> None:
        self.calls = 0
        self.usd = 0.0

    def answer(self, text: str, output: int = 250) -> ModelResponse:
        self.calls += 1
        self.usd += call_usd(output)
        usage = Usage(input_tokens=10, output_tokens=output, cost_usd=call_usd(output), calls=1)
        return ModelResponse(text=text, usage=usage)


def last_user(request: ModelRequest) -> str:
    return str(request.messages[-1]["content"])


# -- scorers -----------------------------------------------------------------------------------


def test_exact_compares_text_without_surrounding_spaces_and_structured_answers_as_data() -> None:
    class Out(BaseModel):
        total: float
        vendor: str

    scorer = exact()
    assert scorer(case(expected="Paris"), "  Paris\n") == Score(passed=True, value=1.0)
    assert scorer(case(expected="Paris"), "paris") == Score(
        passed=False, value=0.0, reason="expected 'Paris', got 'paris'"
    )
    assert exact(case_sensitive=False)(case(expected="Paris"), "paris").passed is True
    expected = {"total": 794.19, "vendor": "ACME"}
    assert scorer(case(expected=expected), Out(total=794.19, vendor="ACME")).passed is True
    assert scorer(case(expected=expected), Out(total=794.2, vendor="ACME")).passed is False


def test_contains_scores_the_share_of_expected_strings_found() -> None:
    scorer = contains()
    assert scorer(case(expected="paris"), "The capital is PARIS.").passed is True
    half = scorer(case(expected=["Paris", "Lyon"]), "Paris and Nice")
    assert (half.passed, half.value, half.reason) == (False, 0.5, "missing 'Lyon'")
    with pytest.raises(ConfigError, match=r"case 'c1': the contains scorer needs `expected`"):
        scorer(case(expected=3, id="c1"), "3")


def test_regex_finds_the_pattern_and_refuses_patterns_it_cannot_bound() -> None:
    scorer = regex(r"total: \d+\.\d{2}")
    assert scorer.name == r"regex:total: \d+\.\d{2}"
    assert scorer(case(), "… total: 794.19 USD").passed is True
    assert scorer(case(), "total: 794").reason == r"no match for 'total: \\d+\\.\\d{2}'"
    with pytest.raises(ConfigError, match=r"does not compile"):
        regex("(unclosed")
    with pytest.raises(ConfigError, match=r"1,001 characters long, more than 1,000"):
        regex("a" * 1001)
    with pytest.raises(ConfigError, match=r"non-empty pattern"):
        regex("")


def test_a_catastrophic_pattern_fails_its_case_instead_of_hanging() -> None:
    score = regex(r"^(a+)+$")(case(), "a" * 40_000 + "b")
    assert score.passed is False
    assert "took more than 0.25 s" in score.reason


def test_json_schema_validates_structured_and_text_outputs(tmp_path: Path) -> None:
    schema = {"type": "object", "properties": {"total": {"type": "number"}}, "required": ["total"]}
    scorer = json_schema(schema)
    assert scorer(case(), {"total": 3}).passed is True
    assert scorer(case(), '{"total": 3}').passed is True
    wrong = scorer(case(), {"total": "3"})
    assert (wrong.passed, wrong.reason) == (False, "total: '3' is not of type 'number'")
    assert scorer(case(), "not json").passed is False
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(schema))
    from_file = json_schema(path)
    assert from_file.name == "json_schema:schema.json"
    assert from_file(case(), {}).reason == "the output: 'total' is a required property"
    with pytest.raises(ConfigError, match=r"the schema is not valid"):
        json_schema({"type": "no-such-type"})
    with pytest.raises(ConfigError, match=r"cannot read"):
        json_schema(tmp_path / "missing.json")


def test_field_equals_compares_numbers_within_the_tolerance() -> None:
    total = field_equals("total", tolerance=0.01)
    assert total.name == "field:total~0.01"
    want = case(expected={"total": 794.19}, id="acme")
    assert total(want, {"total": 794.195}).passed is True
    assert total(want, {"total": 794.18}).passed is True
    assert total(want, {"total": "794.19"}).passed is True
    assert total(want, {"total": 794.21}).reason == "total: expected 794.19, got 794.21"
    assert total(want, {"vendor": "x"}).reason == "the output has no field 'total'"
    assert total(want, {"total": float("nan")}).passed is False
    assert field_equals("total")(want, {"total": 794.191}).passed is False
    nested = field_equals("totals.net")
    assert nested(case(expected={"totals": {"net": "A "}}), {"totals": {"net": "A"}}).passed
    with pytest.raises(ConfigError, match=r"case 'acme': `expected` has no field 'vat'"):
        field_equals("vat")(want, {"vat": 1})
    with pytest.raises(ConfigError, match=r"tolerance must be a number ≥ 0"):
        field_equals("total", tolerance=-1)
    with pytest.raises(ConfigError, match=r"is not a field name"):
        field_equals("a..b")


def test_a_scorer_may_return_a_bool_or_a_number() -> None:
    assert Score.of(True, "s") == Score(passed=True, value=1.0)
    assert Score.of(0.5, "s") == Score(passed=True, value=0.5)
    assert Score.of(0.25, "s") == Score(passed=False, value=0.25)
    with pytest.raises(ConfigError, match=r"scorer 's' returned 2; a scorer returns"):
        Score.of(2, "s")


# -- datasets ----------------------------------------------------------------------------------


def write(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "cases.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_dataset_reads_one_case_per_line_and_numbers_the_cases_without_id(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        '{"inputs": {"q": "a"}, "expected": "A"}',
        "",
        '{"id": "two", "inputs": {"q": "b"}, "metadata": {"tag": "x"}}',
    )
    dataset = Dataset.from_jsonl(path)
    assert (dataset.name, len(dataset)) == ("cases", 2)
    assert [c.id for c in dataset] == ["case-1", "two"]
    assert dataset[1].metadata == {"tag": "x"}
    assert [c.id for c in Dataset([{"inputs": {}}, Case(inputs={}, id="b")])] == ["case-1", "b"]


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"inputs": {}}', "{not json"], r"cases.jsonl:2 is not valid JSON"),
        (['{"inputs": {}}', "", "[1, 2]"], r"cases.jsonl:3: a case is a JSON object"),
        (['{"inputs": {}, "answer": 1}'], r"cases.jsonl:1: unknown key 'answer'"),
        (['{"inputs": "text"}'], r"cases.jsonl:1: inputs: Input should be a valid dictionary"),
        (['{"id": "a"}', '{"id": "a"}'], r"cases.jsonl:2: the id 'a' is already the id of case 1"),
        (["[" * 200 + "]" * 200], r"cases.jsonl:1 is nested more than 64 levels deep"),
        ([""], r"holds no case"),
    ],
)
def test_a_bad_dataset_line_is_named_by_its_number(
    tmp_path: Path, lines: list[str], message: str
) -> None:
    with pytest.raises(DatasetError, match=message) as caught:
        Dataset.from_jsonl(write(tmp_path, *lines))
    assert caught.value.path == str(tmp_path / "cases.jsonl")
    assert caught.value.line == (0 if message == "holds no case" else len(lines))


def test_a_dataset_that_is_not_utf8_or_not_a_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cases.jsonl"
    path.write_bytes(b'{"inputs": {}}\n{"inputs": {"q": "\xff"}}\n')
    with pytest.raises(DatasetError, match=r"cases.jsonl:2: not UTF-8 text") as caught:
        Dataset.from_jsonl(path)
    assert caught.value.line == 2
    with pytest.raises(DatasetError, match=r"cannot read the dataset"):
        Dataset.from_jsonl(tmp_path)


# -- evaluate ----------------------------------------------------------------------------------


def capitals() -> list[Case]:
    return [
        case({"country": "France"}, "Paris", id="fr"),
        case({"country": "Italy"}, "Rome", id="it"),
        case({"country": "Spain"}, "Madrid", id="es"),
        case({"country": "Peru"}, "Lima", id="pe"),
    ]


ANSWERS = {"France": "Paris", "Italy": "Rome", "Spain": "Barcelona", "Peru": "Lima"}


def answering(counter: Counter) -> FunctionModel:
    def fn(request: ModelRequest) -> ModelResponse:
        country = last_user(request).removeprefix("Capital of ").rstrip("?")
        return counter.answer(ANSWERS[country])

    return FunctionModel(fn, name="mini", **PRICES)


async def test_evaluate_counts_passes_and_sums_each_cases_cost() -> None:
    counter = Counter()
    config = Configuration.planner_only(
        answering(counter), "Capital of {{ inputs.country }}?", name="mini"
    )
    report = await evaluate(config, capitals(), exact())
    mini = report.configuration("mini")
    assert (mini.passed, mini.failed, mini.errors, mini.not_run) == (3, 1, 0, 0)
    assert mini.pass_rate == 0.75
    assert [c.status for c in mini.cases] == ["passed", "passed", "failed", "passed"]
    assert mini.cases[2].scores["exact"].reason == "expected 'Madrid', got 'Barcelona'"
    assert counter.calls == mini.calls == 4
    assert [c.cost_usd for c in mini.cases] == pytest.approx([CALL_USD] * 4)
    assert mini.cost_usd == pytest.approx(counter.usd)
    assert report.spent_usd == pytest.approx(counter.usd)
    assert (report.simulated, report.note, report.baseline) == (False, "", "mini")


def planned(counter: Counter, *, worker_answer: str = "notes") -> Orchestrator:
    plan = {"tasks": [{"id": "look", "agent": "scout", "instructions": "Look it up."}]}

    def reasoner(request: ModelRequest) -> ModelResponse:
        if request.output_name == "Plan":
            return counter.answer(json.dumps(plan))
        country = re.search(r"capital of (\w+)", json.dumps(request.messages)).group(1)  # type: ignore[union-attr]
        return counter.answer(ANSWERS[country])

    planner = Agent("planner", FunctionModel(reasoner, name="big", **PRICES), max_output_tokens=300)
    scout = Agent(
        "scout",
        FunctionModel(lambda r: counter.answer(worker_answer, output=5), name="mini", **PRICES),
        max_output_tokens=20,
    )
    return Orchestrator(planner=planner, workers=[scout], memory=None)


async def test_an_orchestrator_configuration_is_compared_with_the_planner_only_baseline() -> None:
    runs, alone = Counter(), Counter()
    workflow = Configuration.orchestrator(
        planned(runs), "Name the capital of {{ inputs.country }}.", name="planned"
    )
    baseline = Configuration.planner_only(
        answering(alone), "Capital of {{ inputs.country }}?", name="planner-only"
    )
    report = await evaluate([workflow, baseline], capitals(), [exact()], concurrency=3)
    assert report.baseline == "planner-only"
    with_plan, by_itself = report.configurations
    assert (with_plan.passed, by_itself.passed) == (3, 3)
    # A planned run is a plan, a task and the answer: three calls per case.
    assert runs.calls == with_plan.calls == 12
    assert with_plan.cost_usd == pytest.approx(runs.usd)
    assert by_itself.cost_usd == pytest.approx(alone.usd)
    # A plan and an answer at the baseline's price, and a small task: a little over 2×.
    per_case = 2 * CALL_USD + call_usd(5)
    assert with_plan.cost_per_case_usd == pytest.approx(per_case)
    assert with_plan.saving == pytest.approx(1 - per_case / CALL_USD)
    assert by_itself.saving is None


@pytest.mark.parametrize("kind", ["planner_only", "orchestrator"])
async def test_one_budget_is_never_overshot_and_the_cases_it_stops_are_not_run(
    kind: str,
) -> None:
    counter = Counter()
    cases = [case({"country": c}, ANSWERS[c], id=f"{c}-{i}") for i in range(6) for c in ANSWERS]
    if kind == "planner_only":
        config = Configuration.planner_only(
            answering(counter), "Capital of {{ inputs.country }}?", name="x"
        )
    else:
        config = Configuration.orchestrator(
            planned(counter), "Name the capital of {{ inputs.country }}.", name="x"
        )
    # Above what the largest call reserves (its prompt and 4,096 tokens at most), below what
    # all the cases would spend.
    limit = 0.012
    report = await evaluate(config, cases, exact(), budget=Budget(usd=limit), concurrency=6)
    x = report.configuration("x")
    assert counter.usd <= limit
    assert x.cost_usd == pytest.approx(counter.usd)
    assert x.calls == counter.calls
    assert 0 < x.not_run < len(cases)
    assert x.errors == 0  # refused calls are not failures
    assert x.passed + x.failed + x.not_run == len(cases)
    assert all(c.error and "budget" in c.error for c in x.cases if c.status == "not_run")
    assert report.spent_usd <= limit


async def test_a_call_that_fits_once_others_settle_waits_instead_of_being_refused() -> None:
    counter = Counter()
    config = Configuration.planner_only(
        answering(counter), "Capital of {{ inputs.country }}?", name="x"
    )
    # Each call reserves its prompt and 4,096 answer tokens (about $0.0082): one at a time fits
    # in this budget, and every call's real cost ($0.00051) leaves room for the next.
    limit = 0.0082 + 4 * CALL_USD + 0.0002
    report = await evaluate(config, capitals(), exact(), budget=limit, concurrency=4)
    x = report.configuration("x")
    assert (x.passed, x.failed, x.not_run) == (3, 1, 0)
    assert counter.calls == 4
    assert report.spent_usd == pytest.approx(counter.usd)
    assert report.spent_usd <= limit


async def test_a_failing_configuration_is_an_error_with_its_message() -> None:
    def flaky(inputs: dict[str, Any]) -> str:
        if inputs["country"] == "Peru":
            raise PermanentModelError("the provider refused", model="mini")
        return ANSWERS[inputs["country"]]

    report = await evaluate(Configuration.function(flaky, name="f"), capitals(), exact())
    f = report.configuration("f")
    assert (f.passed, f.failed, f.errors, f.pass_rate) == (2, 1, 1, 0.5)
    assert f.cases[3].error == "PermanentModelError: the provider refused"
    assert [c.case_id for c in f.failures()] == ["es", "pe"]


async def test_a_judge_grades_through_the_same_budget_and_its_cost_is_the_cases() -> None:
    counter, judged = Counter(), Counter()

    def grade(request: ModelRequest) -> ModelResponse:
        good = "<answer>\nParis" in last_user(request)
        verdict = {"passed": good, "score": 9 if good else 2, "reason": "checked"}
        return judged.answer(json.dumps(verdict))

    judge_agent = Agent("judge", FunctionModel(grade, name="judge", **PRICES), max_output_tokens=50)
    config = Configuration.planner_only(
        answering(counter), "Capital of {{ inputs.country }}?", name="mini"
    )
    report = await evaluate(config, capitals()[:2], [judge(judge_agent)], budget=1.0)
    mini = report.configuration("mini")
    assert [c.status for c in mini.cases] == ["passed", "failed"]
    assert [c.score for c in mini.cases] == [0.9, 0.2]
    assert mini.mean_score == pytest.approx(0.55)
    assert judged.calls == 2
    assert mini.cost_usd == pytest.approx(counter.usd + judged.usd)
    assert report.spent_usd == pytest.approx(counter.usd + judged.usd)


async def test_a_scorer_that_raises_makes_its_case_an_error() -> None:
    def fussy(case: Case, output: Any) -> bool:
        return {"Paris": True}[output]

    config = Configuration.function(lambda inputs: ANSWERS[inputs["country"]], name="f")
    f = (await evaluate(config, capitals()[:2], fussy)).configuration("f")
    assert [c.status for c in f.cases] == ["passed", "error"]
    assert f.cases[1].error == "scorer 'fussy' raised KeyError: 'Rome'"


async def test_a_scorer_that_cannot_score_a_case_stops_the_evaluation() -> None:
    config = Configuration.function(lambda inputs: {"total": 1}, name="f")
    with pytest.raises(ConfigError, match=r"case 'fr': `expected` has no field 'total'"):
        await evaluate(config, capitals(), field_equals("total"), concurrency=1)


async def test_bad_arguments_are_refused_with_the_remedy() -> None:
    config = Configuration.function(lambda inputs: "x", name="f")
    with pytest.raises(ConfigError, match=r"two configurations are named 'f'"):
        await evaluate([config, config], capitals(), exact())
    with pytest.raises(ConfigError, match=r"baseline 'nope' is not one of"):
        await evaluate(config, capitals(), exact(), baseline="nope")
    with pytest.raises(ConfigError, match=r"concurrency must be between 1 and 256"):
        await evaluate(config, capitals(), exact(), concurrency=0)
    with pytest.raises(ConfigError, match=r"give at least one scorer"):
        await evaluate(config, capitals(), [])
    with pytest.raises(ConfigError, match=r"has no planner"):
        Configuration.orchestrator(Orchestrator(memory=None), "{{ inputs.q }}")


def test_the_blocking_twin_has_evaluates_signature_and_runs_it() -> None:
    assert inspect.signature(evaluate_sync) == inspect.signature(evaluate)
    config = Configuration.function(lambda inputs: ANSWERS[inputs["country"]], name="f")
    report = evaluate_sync(config, capitals(), exact())
    assert report.configuration("f").passed == 3


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 21)]
    assert (percentile(values, 50), percentile(values, 95)) == (10.0, 19.0)
    assert percentile([], 50) is None


async def test_a_simulated_workflow_is_labelled_and_its_latency_is_the_models_pace() -> None:
    config = Configuration.workflow(EXTRACT / "evals" / "extract.yaml", simulate=True)
    cases = list(Dataset.from_jsonl(EXTRACT / "evals" / "cases.jsonl"))[:3]
    report = await evaluate(config, cases, field_equals("total", tolerance=0.01), budget=0.5)
    extract = report.configuration("extract")
    assert (report.simulated, report.note) == (True, SIMULATED_WARNING)
    assert extract.not_run == 0
    assert extract.calls >= 9  # three votes per invoice
    assert all(c.seconds is not None and c.seconds > 0.5 for c in extract.cases)
    assert 0 < extract.cost_usd <= 0.5


# -- the HTML page ----------------------------------------------------------------------------


async def test_the_html_page_is_self_contained_and_escapes_what_cases_hold() -> None:
    config = Configuration.function(lambda inputs: "<script>alert(1)</script>", name="f<b>")
    report = await evaluate(config, [case({"q": 1}, "x", id="<img src=x>")], exact())
    page = eval_report_html(report)
    assert "<script" not in page.lower()
    assert "&lt;img src=x&gt;" in page
    assert "f&lt;b&gt;" in page
    assert not re.search(r"(src|href)=\"?https?:", page)
    assert "default-src 'none'" in page


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="no system Chromium (apt install chromium)")
def test_the_html_page_renders_in_headless_chromium_without_errors_or_requests(
    tmp_path: Path,
) -> None:
    from playwright.sync_api import sync_playwright

    config = Configuration.function(lambda inputs: ANSWERS[inputs["country"]], name="mini")
    report = evaluate_sync(config, capitals(), exact())
    path = tmp_path / "eval.html"
    path.write_text(eval_report_html(report), encoding="utf-8")
    problems: list[str] = []
    outside: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}"))
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))

            def route(r: Any) -> None:
                if r.request.url.startswith("file:"):
                    r.continue_()
                else:
                    outside.append(r.request.url)
                    r.abort()

            page.route("**/*", route)
            page.goto(path.as_uri())
            visible = page.inner_text("body")
        finally:
            browser.close()
    assert (problems, outside) == ([], [])
    assert "Side by side" in visible
    assert "expected 'Madrid', got 'Barcelona'" in visible
    assert "75%" in visible  # the pass rate


# -- the dataset shipped with the invoice-extraction example -------------------------------------

_TOTAL_LINE = re.compile(
    r"^\|?\s*(total|amount due|balance due|total due|total amount due|total charges)\b"
    r"[^\n]*?(?P<amount>[-\d.,]+)\s*\|?\s*$",
    re.IGNORECASE | re.MULTILINE,
)


def _printed_amount(text: str) -> Decimal:
    """A printed amount as a Decimal: "1,927.50", "1.162,63" (German), "¥122,100"."""
    if re.fullmatch(r"[\d.]+,\d{2}", text):
        text = text.replace(".", "").replace(",", ".")
    return Decimal(text.replace(",", ""))


def test_the_shipped_dataset_holds_each_invoice_with_its_printed_total() -> None:
    dataset = Dataset.from_jsonl(EXTRACT / "evals" / "cases.jsonl")
    documents = sorted((EXTRACT / "documents").glob("*.txt"))
    assert [c.id for c in dataset] == [path.stem for path in documents]
    for item, path in zip(dataset, documents, strict=True):
        text = path.read_text(encoding="utf-8")
        assert item.inputs == {"document": text}
        # The amount due is the last total line of the document (after discounts and tax).
        printed = [_printed_amount(m.group("amount")) for m in _TOTAL_LINE.finditer(text)]
        assert printed, path.name
        assert Decimal(str(item.expected["total"])) == printed[-1], path.name
        assert item.expected["currency"] in {"USD", "EUR", "GBP", "CAD", "JPY", "CHF"}
        # Lines plus tax equal the total everywhere but on the invoice whose total is wrong.
        lines = Decimal(str(item.metadata["lines_plus_tax"]))
        assert (lines == printed[-1]) == (item.id != "14_cobalt_strategy"), path.name
