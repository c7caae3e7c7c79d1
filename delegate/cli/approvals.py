"""The commands on tool calls that wait for a human: `pending` lists them, `approve` decides one.

A run whose task called a tool that requires approval ends "waiting", with the call in the
store. `delegate pending` lists such calls; `delegate approve RUN_ID CALL_ID` (or `--deny
--reason TEXT`) records the decision, from any process; `delegate resume RUN_ID` (or
`Orchestrator.resume(run_id)` in Python) then goes on exactly where the task paused. Arguments
are shown with every known credential masked (they were masked when stored, too).

`delegate show RUN_ID` lists a run's calls too, through `call_documents` and `print_calls`:
those that wait, with the commands that decide them, and the decisions made — by a human
(`delegate approve`, `resume(decisions=...)`) or inline by an `approve_tool` callback (its
`tool_call_decided` events say so: `decided_by`).
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TextIO

import click

from delegate.cli._guard import stdout
from delegate.cli._stores import DB_HELP, no_run, open_store, store_url

if TYPE_CHECKING:
    from delegate.memory.records import ApprovalRecord
    from delegate.memory.store import Store

__all__ = [
    "approve_command",
    "call_documents",
    "decided_by",
    "pending_command",
    "print_calls",
]

_SHOWN_ARGUMENTS = 300  # characters of a call's arguments shown in the table


def _call_json(call: ApprovalRecord) -> dict[str, Any]:
    from delegate._log import redact_text

    return {
        "run_id": call.run_id,
        "call_id": call.call_id,
        "task_id": call.task_id,
        "agent": call.agent,
        "tool": call.tool,
        "arguments": redact_text(call.arguments),
        "why": redact_text(call.why),
        "status": call.status,
        "reason": None if call.reason is None else redact_text(call.reason),
        "created_at": call.created_at.isoformat(),
    }


def decided_by(store: Store, run_id: str) -> dict[str, str]:
    """Who decided each of the run's decided calls that a human did not: call id → "callback"
    (from the run's `tool_call_decided` events)."""
    found: dict[str, str] = {}
    for event in store.get_events(run_id, kinds=("tool_call_decided",)):
        call, by = event.data.get("call_id"), event.data.get("by")
        if isinstance(call, str) and isinstance(by, str):
            found[call] = by
    return found


def _by(call: ApprovalRecord, by: Mapping[str, str]) -> str | None:
    if call.status == "pending":
        return None
    return by.get(call.call_id, "human")


def call_documents(calls: Sequence[ApprovalRecord], by: Mapping[str, str]) -> list[dict[str, Any]]:
    """The run's calls as `show --json` gives them: each as `pending --json` does, with
    `decided_by` ("human", "callback"; None while pending) and `decided_at`."""
    return [
        {
            **_call_json(call),
            "decided_by": _by(call, by),
            "decided_at": None if call.decided_at is None else call.decided_at.isoformat(),
        }
        for call in calls
    ]


def print_calls(
    calls: Sequence[ApprovalRecord], by: Mapping[str, str], stream: TextIO, db: str | None
) -> None:
    """`delegate show`'s sections on a run's tool calls: those waiting for a decision, with the
    command that decides them (`--db` when given), then the decisions made."""
    from delegate._log import redact_text
    from delegate.cli._format import one_line

    out = stream.write
    pending = [call for call in calls if call.status == "pending"]
    if pending:
        out("\ntool calls waiting for a decision:\n")
        for call in pending:
            arguments = one_line(redact_text(call.arguments), _SHOWN_ARGUMENTS)
            out(f"  {call.call_id}  task {call.task_id!r}  {call.tool}({arguments})\n")
            if call.why:
                out(f"      why: {one_line(redact_text(call.why))}\n")
        run, first = shlex.quote(pending[0].run_id), pending[0].call_id
        where = f" --db {shlex.quote(db)}" if db else ""
        out(
            f"  decide each: delegate approve {run} {first}{where} (or --deny --reason TEXT), "
            "then resume the run\n"
        )
    decided = [call for call in calls if call.status != "pending"]
    if decided:
        out("\ntool call decisions:\n")
        for call in decided:
            arguments = one_line(redact_text(call.arguments), _SHOWN_ARGUMENTS)
            reason = f": {one_line(redact_text(call.reason))}" if call.reason else ""
            out(
                f"  {call.call_id}  task {call.task_id!r}  {call.tool}({arguments}): "
                f"{call.status} by {_by(call, by)}{reason}\n"
            )


@click.command("pending")
@click.argument("run_id", required=False)
@click.option("--db", metavar="URL", help=DB_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def pending_command(run_id: str | None, db: str | None, as_json: bool) -> None:
    """List the tool calls that wait for a human's decision: of RUN_ID, or of every waiting run.

    Decide one with `delegate approve RUN_ID CALL_ID` (or `--deny --reason TEXT`), then
    continue the run with `delegate resume RUN_ID`.
    """
    from delegate.cli._format import one_line, write_json

    calls: list[ApprovalRecord] = []
    store = open_store(db)
    if store is None and run_id is not None:
        raise no_run(run_id, store_url(db))
    if store is not None:
        with store:
            if run_id is not None and store.get_run(run_id) is None:
                raise no_run(run_id, store.url)
            calls = store.list_pending(run_id)
    out = stdout()
    if as_json:
        write_json({"pending": [_call_json(call) for call in calls]}, out)
        return
    if not calls:
        where = f"run {run_id!r}" if run_id is not None else "any waiting run"
        out.write(f"no tool call of {where} waits for a decision\n")
        return
    for call in calls:
        out.write(
            f"{call.run_id}  {call.call_id}  task {call.task_id!r}  {call.tool}"
            f"({one_line(call.arguments, _SHOWN_ARGUMENTS)})\n"
        )
        if call.why:
            out.write(f"    why: {one_line(call.why)}\n")
    first = calls[0]
    out.write(
        f"\ndecide with: delegate approve {first.run_id} {first.call_id} "
        "[--deny --reason TEXT]; then: delegate resume RUN_ID\n"
    )


@click.command("approve")
@click.argument("run_id")
@click.argument("call_id")
@click.option("--deny", is_flag=True, help="Deny the call: the model reads the reason instead.")
@click.option("--reason", metavar="TEXT", help="Why it is denied (with --deny), for the model.")
@click.option("--db", metavar="URL", help=DB_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the decided call as JSON.")
def approve_command(
    run_id: str, call_id: str, deny: bool, reason: str | None, db: str | None, as_json: bool
) -> None:
    """Approve (or, with --deny, deny) the tool call CALL_ID of the waiting run RUN_ID.

    The decision is stored; `delegate resume RUN_ID` then runs the approved call, or answers
    the model with "Denied by a human: <reason>", and the run goes on.
    """
    from delegate.cli._format import write_json
    from delegate.errors import ConfigError

    if reason is not None and not deny:
        raise ConfigError("--reason goes with --deny: it tells the model why a call was denied")
    store = open_store(db)
    if store is None:
        raise no_run(run_id, store_url(db))
    with store:
        decided = store.decide_call(run_id, call_id, approve=not deny, reason=reason)
    if as_json:
        write_json(_call_json(decided), stdout())
        return
    stdout().write(
        f"{decided.status} {decided.tool} call {call_id} of run {run_id}; continue it with: "
        f"delegate resume {run_id}\n"
    )
