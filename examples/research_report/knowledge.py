"""What runs of the workflow learn, and what the next ones are shown of it.

The researchers save their findings with the `remember` tool (from `Agent(memory=True)`) and
`scope="workflow"`, so each finding lands in the workflow's namespace, `workflow:<name>`, which
every run of the workflow reads: the planner is shown the entries relevant to its goal, and
`recall`/`search_memory` find them. Each entry keeps its provenance (the run and task that wrote
it); a finding written again becomes a new version.
"""

from __future__ import annotations

from delegate.memory import Memory, MemoryRecord, Store, relevant

FINDINGS = "finding/"


async def shown_to_planner(store: Store, workflow: str, goal: str) -> list[MemoryRecord]:
    """The entries the planner of a new run of `goal` is shown: `PlannedRun` makes the same
    `relevant(...)` search over the new run's (still empty) namespace, the workflow's and the
    global one."""
    return await relevant(Memory(store, workflow=workflow), goal)


async def saved_by(store: Store, workflow: str, run_id: str) -> list[MemoryRecord]:
    """The findings run `run_id` saved in the workflow's namespace for later runs, in key order."""
    records = await Memory(store, workflow=workflow).list(FINDINGS, namespace="workflow")
    return [record for record in records if record.run_id == run_id]
