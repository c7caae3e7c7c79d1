"""examples/extract runs end to end offline: one row per invoice, votes settled, a cheap review."""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import json
import runpy
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "extract"
DOCUMENTS = sorted(path.stem for path in (EXAMPLE / "documents").glob("*.txt"))

# What the shipped invoices say: the total due (after discounts and tax), as printed.
TOTALS = {
    "01_acme_office_supply": "794.19",
    "02_brightline_it": "1927.50",
    "03_nordlicht_industrietechnik": "1162.63",  # printed "1.162,63"
    "04_harbor_pine_logistics": "1249.92",  # after a discount line; subtotal 1,152.00
    "05_greenleaf_catering": "1099.22",
    "06_kestrel_software": "4236.00",
    "07_maple_leaf_print": "923.21",
    "08_sakura_precision": "122100",  # yen: no minor unit
    "09_quarry_hill_legal": "4779.00",
    "10_brightline_it_reminder": "1927.50",
    "11_summit_janitorial": "2508.40",
    "12_atlas_steel": "49615.90",
    "13_bluewave_telecom": "589.69",
    "14_cobalt_strategy": "4500.00",  # the vendor's lines add up to 4,200.00
    "15_alpine_coffee": "666.98",
    "16_redwood_electric": "3448.76",
    "17_orbit_cloud": "423.11",
    "18_fjord_design": "3645.60",
    "19_pinecrest_medical": "602.33",
    "20_lumen_events": "1449.35",
}
WITHOUT_PO = {
    "05_greenleaf_catering",
    "09_quarry_hill_legal",  # "PO: none"
    "11_summit_janitorial",  # "PO: n/a", and a "PO Box" in the address
    "19_pinecrest_medical",
}


@contextlib.contextmanager
def _example() -> Iterator[dict[str, Any]]:
    """The example's main.py as a module namespace, with its folder importable."""
    sys.path.insert(0, str(EXAMPLE))
    try:
        yield runpy.run_path(str(EXAMPLE / "main.py"), run_name="extract_main")
    finally:
        sys.path.remove(str(EXAMPLE))


def _run(argv: list[str]) -> tuple[Any, str]:
    printed = io.StringIO()
    with _example() as example, contextlib.redirect_stdout(printed):
        run = example["main"](argv)
    return run, printed.getvalue()


@pytest.fixture(scope="module")
def offline(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path, str]:
    out = tmp_path_factory.mktemp("extract")
    run, printed = _run(["--out", str(out)])
    return run, out, printed


@pytest.fixture(scope="module")
def misreads() -> dict[str, str]:
    with _example():
        from extraction.fakes import MISREADS

    return MISREADS


def test_ships_twenty_invoices() -> None:
    assert len(DOCUMENTS) == 20
    assert sorted(TOTALS) == DOCUMENTS


def test_every_document_has_one_csv_row_with_parsed_fields(offline: tuple[Any, Path, str]) -> None:
    run, out, _ = offline
    assert run.result.status == "succeeded"
    with (out / "extractions.csv").open(newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    assert [row["document"] for row in rows] == DOCUMENTS
    for row in rows:
        assert row["status"] == "succeeded"
        assert dt.date.fromisoformat(row["date"]) < dt.date(2024, 5, 1)
        if row["due_date"]:
            assert dt.date.fromisoformat(row["due_date"]) > dt.date.fromisoformat(row["date"])
        assert len(row["currency"]) == 3
        assert row["currency"].isupper()
        assert Decimal(row["tax"]) >= 0
        assert int(row["line_items"]) >= 2
    assert {row["document"]: row["total"] for row in rows} == TOTALS
    assert {row["document"] for row in rows if not row["po_number"]} == WITHOUT_PO
    by_name = {row["document"]: row for row in rows}
    assert by_name["09_quarry_hill_legal"]["date"] == "2024-03-31"  # not the due date above it
    assert by_name["03_nordlicht_industrietechnik"]["currency"] == "EUR"
    assert by_name["08_sakura_precision"]["currency"] == "JPY"
    assert by_name["14_cobalt_strategy"]["lines_plus_tax"] == "4200.00"


def test_json_has_one_row_per_document_and_the_review(offline: tuple[Any, Path, str]) -> None:
    run, out, _ = offline
    written = json.loads((out / "extractions.json").read_text(encoding="utf-8"))
    assert [row["document"] for row in written["documents"]] == DOCUMENTS
    for row in written["documents"]:
        items = row["line_items"]
        lines = sum(Decimal(item["amount"]) for item in items) + Decimal(row["tax"])
        assert str(lines) == row["lines_plus_tax"]
        for item in items:  # every line of the shipped invoices is priced exactly
            assert Decimal(item["quantity"]) * Decimal(item["unit_price"]) == Decimal(
                item["amount"]
            )
    discount = [
        item for item in written["documents"][3]["line_items"] if "discount" in item["description"]
    ]
    assert [item["amount"] for item in discount] == ["-128.00"]

    review = written["review"]
    findings = {finding["kind"]: sorted(finding["documents"]) for finding in review["anomalies"]}
    assert findings == {
        "duplicate": ["02_brightline_it", "10_brightline_it_reminder"],
        "total_mismatch": ["14_cobalt_strategy"],
        "outlier": ["12_atlas_steel"],
        "missing_po": sorted(WITHOUT_PO),
    }
    assert review["summary"]
    flagged = {row["document"]: row["flags"] for row in written["documents"]}
    assert flagged["14_cobalt_strategy"] == ["total_mismatch"]
    assert flagged["01_acme_office_supply"] == []
    assert written["usage"]["budget_usd"] == run.budget.usd


def test_disagreeing_samples_and_only_those_went_to_the_judge(
    offline: tuple[Any, Path, str], misreads: dict[str, str]
) -> None:
    run, _, printed = offline
    assert len(misreads) == 2
    split = {name for name, vote in run.votes.items() if not vote.unanimous}
    assert split == set(misreads)
    for name in DOCUMENTS:
        vote = run.votes[name]
        assert len(vote.samples) == 3
        judged = len(run.log.of("judge", name))
        task = run.result.tasks[name]
        if name in misreads:
            assert list(vote.disagreements) == [misreads[name]]
            assert judged == 1
            assert [verdict.passed for verdict in vote.verdicts] == [True]
            assert task.usage.calls == 4  # three samples and the judge
        else:
            assert judged == 0
            assert task.usage.calls == 3
    # The majority won over the misreading sample.
    assert run.invoices["04_harbor_pine_logistics"].total == 1249.92
    assert run.invoices["09_quarry_hill_legal"].date == dt.date(2024, 3, 31)
    assert run.result.usage.by_agent["judge"].calls == 2
    assert run.result.usage.by_agent["extractor"].calls == 3 * len(DOCUMENTS)
    assert "total sampled as 1249.92 ×2, 1152.00 ×1 → kept 1249.92; judge: passed" in printed


def test_the_reviewer_saw_only_the_compact_table(offline: tuple[Any, Path, str]) -> None:
    run, _, _ = offline
    [call] = run.log.of("reviewer")
    texts = [document.text for document in run.documents]
    assert call.prompt_chars * 4 < sum(map(len, texts))
    assert "<document" not in call.prompt
    for text in texts:
        for line in text.splitlines():
            if len(line.strip()) > 40:  # no sentence of any document reached the reviewer
                assert line.strip() not in call.prompt
    rows = [
        line for line in call.prompt.splitlines() if line.startswith("| ") and "---" not in line
    ]
    assert len(rows) == len(DOCUMENTS) + 1  # the header and one row per document
    assert run.result.tasks["review"].usage.input_tokens * 3 < sum(
        run.result.tasks[name].usage.input_tokens / run.result.tasks[name].usage.calls
        for name in DOCUMENTS
    )


def test_cost_table_and_budget_held(offline: tuple[Any, Path, str]) -> None:
    run, _, printed = offline
    usage = run.result.usage
    assert run.budget.usd == 0.10
    assert usage.cost_usd <= run.budget.usd
    assert usage.refused == 0
    assert set(usage.by_role) == {"planner", "workers"}
    assert usage.by_role["planner"].calls == 1
    assert usage.by_role["workers"].calls == 3 * len(DOCUMENTS) + 2
    assert usage.by_model.keys() == {"openai/gpt-4o-mini", "openai/o4-mini"}
    assert usage.planner_only_usd is not None
    assert usage.planner_only_usd > 5 * usage.cost_usd  # o4-mini alone would cost 5× more
    assert "planner_only_usd" in printed
    assert "a saving of 8" in printed
    assert "0 calls refused — held" in printed


def test_a_tight_budget_refuses_calls_but_every_document_keeps_its_row(tmp_path: Path) -> None:
    run, printed = _run(["--out", str(tmp_path), "--budget-usd", "0.004"])
    usage = run.result.usage
    assert usage.cost_usd <= 0.004
    assert usage.refused > 0
    assert run.result.status == "partial"
    assert run.review is None  # the review needs every extraction
    with (tmp_path / "extractions.csv").open(newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    assert [row["document"] for row in rows] == DOCUMENTS
    failed = [row for row in rows if row["status"] != "succeeded"]
    assert failed
    refused = "failed: budget of $0.004 for run would be exceeded"
    assert all(row["status"].startswith(refused) for row in failed)
    assert all(row["total"] == "" for row in failed)
    assert f"{usage.refused} calls refused — held (raise --budget-usd" in printed
    assert "review: did not run" in printed


def test_simulated_run_holds_its_budget(tmp_path: Path) -> None:
    run, printed = _run(["--simulate", "--time-scale", "0", "--out", str(tmp_path)])
    usage = run.result.usage
    assert run.result.status == "succeeded"
    assert usage.cost_usd <= run.budget.usd
    assert usage.refused == 0
    assert usage.by_role["planner"].reasoning_tokens > 0  # o4-mini bills its thinking
    assert len(run.invoices) == len(DOCUMENTS)
    assert "SIMULATED" in printed


def test_the_offline_judge_rejects_a_misread_field() -> None:
    with _example():
        from extraction.fakes import judge
        from extraction.pipeline import EXTRACT_PROMPT
        from extraction.reader import read_invoice

    from delegate import ModelRequest
    from delegate.orchestrator.checks import JUDGE_PROMPT

    text = (EXAMPLE / "documents" / "04_harbor_pine_logistics.txt").read_text(encoding="utf-8")
    task = EXTRACT_PROMPT.replace("{{ name }}", "04_harbor_pine_logistics").replace(
        "{{ text }}", text.strip()
    )
    right = read_invoice(text).invoice
    wrong = right.model_copy(update={"total": 1152.0})

    def verdict(answer: str) -> dict[str, Any]:
        prompt = JUDGE_PROMPT.format(task=task, answer=answer)
        return judge(ModelRequest(messages=[{"role": "user", "content": prompt}]))

    assert verdict(right.model_dump_json())["passed"] is True
    rejected = verdict(wrong.model_dump_json())
    assert rejected["passed"] is False
    assert rejected["feedback"] == "total is 1152.0, the document says 1249.92"
