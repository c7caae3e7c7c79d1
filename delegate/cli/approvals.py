"""The commands on tool calls that wait for a human: `pending` lists them, `approve` decides one.

A run whose task called a tool that requires approval ends "waiting", with the call in the
store. `delegate pending` lists such calls; `delegate approve RUN_ID CALL_ID` (or `--deny
--reason TEXT`) records the decision, from any process; `delegate resume RUN_ID` (or
`Orchestrator.resume(run_id)` in Python) then goes on exactly where the task paused. Arguments
are shown with every known credential masked (they were masked when stored, too).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from delegate.cli._guard import stdout
from delegate.cli._stores import DB_HELP, no_run, open_store, store_url

if TYPE_CHECKING:
    from delegate.memory.records import ApprovalRecord

__all__ = ["approve_command", "pending_command"]

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
