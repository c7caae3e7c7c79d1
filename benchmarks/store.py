"""Store benchmark: concurrent writers from several processes, and write_batch throughput.

    .venv/bin/python benchmarks/store.py                      # SQLite; PostgreSQL too if
                                                              # $DELEGATE_TEST_PG_URL is set
    .venv/bin/python benchmarks/store.py --pg postgresql+psycopg://postgres@127.0.0.1:5432/postgres
    .venv/bin/python benchmarks/store.py --quick              # fewer writes

Concurrency (issue 4 target): 2 processes on one SQLite file, 4 on one PostgreSQL database,
each writing 2,000 memories, half to one key all processes share and half to keys of its own.
Each process also runs a durable graph of 200 tasks (FunctionModel, 0 ms) on the same database
while it writes. Lost = writes that returned but whose version is missing, or task results of a
finished run missing from the store; locked = "database is locked" errors.
Target: 0 lost, 0 locked.

Throughput: `write_batch` as the orchestrator's group commit uses it: batches of 50 task
records (each task written twice: started, then finished) and 2 events per task record.

PostgreSQL runs in a fresh database created for the benchmark and dropped after it.
Exit status is 0 either way; targets are printed next to the numbers.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from delegate.memory.records import EventRecord, RunRecord, TaskRecord
from delegate.memory.store import Store, StoreError

GRAPH_TASKS = 200


def _run_graph(url: str, worker: int, outcome: dict[str, int]) -> None:
    """Run a durable graph of GRAPH_TASKS tasks; record how many results reached the store."""
    from delegate import Agent, Orchestrator, TaskGraph
    from delegate.testing import FunctionModel

    agent = Agent("worker", FunctionModel(lambda request: "done"))
    graph = TaskGraph()
    for n in range(GRAPH_TASKS):
        graph.add(f"t{n}", agent=agent, prompt=f"Item {n}.")
    run_id = f"bench-graph-{worker}-{uuid.uuid4().hex[:8]}"
    result = Orchestrator(memory=url, max_calls=None).execute_sync(graph, run_id=run_id)
    with Store.open(url) as store:
        stored = [t for t in store.get_tasks(run_id) if t.status == "succeeded"]
    outcome["graph_succeeded"] = sum(t.status == "succeeded" for t in result.tasks.values())
    outcome["graph_stored"] = len(stored)


def _writer(url: str, worker: int, count: int) -> dict[str, int]:
    written = locked = 0
    outcome: dict[str, int] = {}
    # The process runs a durable graph while it writes its memories, as a real worker would.
    runner = threading.Thread(target=_run_graph, args=(url, worker, outcome))
    runner.start()
    with Store.open(url) as store:
        for i in range(count):
            key = "shared" if i % 2 == 0 else f"own-{worker}-{i % 20}"
            try:
                store.put_memory("bench", key, {"worker": worker, "i": i}, text=f"note {i}")
            except StoreError as exc:
                if "database is locked" not in str(exc):
                    raise
                locked += 1
            else:
                written += 1
    runner.join()
    return {"written": written, "locked": locked, **outcome}


def concurrency(url: str, processes: int, count: int) -> dict[str, Any]:
    Store.open(url).close()
    context = multiprocessing.get_context("spawn")
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=processes, mp_context=context) as pool:
        results = list(pool.map(_writer, [url] * processes, range(processes), [count] * processes))
    elapsed = time.perf_counter() - start
    written = sum(r["written"] for r in results)
    with Store.open(url) as store:
        stored = len(store.memory_history("bench", "shared"))
        stored += sum(
            m.version for w in range(processes) for m in store.list_memories("bench", f"own-{w}-")
        )
    return {
        "processes": processes,
        "memories_per_process": count,
        "written": written,
        "lost": written - stored,
        "locked": sum(r["locked"] for r in results),
        "graph_tasks_lost": sum(r["graph_succeeded"] - r["graph_stored"] for r in results),
        "graph_tasks": sum(r["graph_succeeded"] for r in results),
        "seconds": elapsed,
        "writes_per_s": written / elapsed,
    }


def throughput(url: str, tasks: int, batch: int = 50) -> dict[str, Any]:
    with Store.open(url) as store:
        store.create_run(RunRecord(id="bench", graph={"n": tasks}))
        records = 0
        events = 0
        batches = []
        start = time.perf_counter()
        for base in range(0, tasks, batch // 2):
            ids = [f"t{i}" for i in range(base, min(base + batch // 2, tasks))]
            task_records = [
                TaskRecord(run_id="bench", task_id=t, status="running", attempts=1) for t in ids
            ] + [
                TaskRecord(
                    run_id="bench",
                    task_id=t,
                    status="succeeded",
                    attempts=1,
                    output={"text": "x" * 40},
                    usage={"input_tokens": 10, "output_tokens": 20},
                )
                for t in ids
            ]
            event_records = [
                EventRecord(run_id="bench", kind=kind, at=time.time(), data={"task": t})
                for t in ids
                for kind in ("task_started", "task_finished")
            ]
            batches.append((task_records, event_records))
            records += len(task_records)
            events += len(event_records)
        built = time.perf_counter()
        for task_records, event_records in batches:
            store.write_batch("bench", task_records, event_records)
        end = time.perf_counter()
        elapsed, writing = end - start, end - built
        assert len(store.get_tasks("bench")) == tasks
    return {
        "tasks": tasks,
        "task_records": records,
        "events": events,
        "seconds": elapsed,
        "tasks_per_s": tasks / elapsed,
        "events_per_s": events / elapsed,
        "us_per_task_record": elapsed / records * 1e6,
        "us_per_task": elapsed / tasks * 1e6,
        "us_per_task_write_batch_only": writing / tasks * 1e6,
    }


@contextmanager
def fresh_pg_database(admin_url: str) -> Iterator[str]:
    import psycopg

    name = f"delegate_bench_{uuid.uuid4().hex[:10]}"
    libpq = make_url(admin_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(libpq, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield (
            make_url(admin_url)
            .set(drivername="postgresql+psycopg", database=name)
            .render_as_string(hide_password=False)
        )
    finally:
        with psycopg.connect(libpq, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def report(backend: str, conc: dict[str, Any], thr: dict[str, Any], target_us: float) -> None:
    ok = conc["lost"] == 0 and conc["locked"] == 0 and conc["graph_tasks_lost"] == 0
    print(f"== {backend}")
    print(
        f"concurrency: {conc['processes']} processes x {conc['memories_per_process']} memories: "
        f"lost {conc['lost']}, locked {conc['locked']}, {conc['seconds']:.2f} s "
        f"({conc['writes_per_s']:.0f} writes/s); each also ran a durable graph: "
        f"{conc['graph_tasks']} tasks, {conc['graph_tasks_lost']} results lost;  "
        "target 0 lost, 0 locked: "
        f"{'OK' if ok else 'MISSED'}"
    )
    print(
        f"write_batch: {thr['tasks']} tasks ({thr['task_records']} task records, {thr['events']} "
        f"events) in {thr['seconds']:.2f} s: {thr['tasks_per_s']:.0f} tasks/s, "
        f"{thr['events_per_s']:.0f} events/s, {thr['us_per_task_record']:.1f} µs per task record, "
        f"{thr['us_per_task']:.1f} µs per task (2 records + 2 events, building the records "
        f"included), {thr['us_per_task_write_batch_only']:.1f} µs in write_batch alone; "
        f"persistence target ≤ {target_us:.0f} µs per task"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pg", default=os.environ.get("DELEGATE_TEST_PG_URL"))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    count = 500 if args.quick else 2000
    tasks = 2000 if args.quick else 10_000
    with tempfile.TemporaryDirectory() as tmp:
        conc = concurrency(f"sqlite:///{Path(tmp) / 'conc.db'}", 2, count)
        thr = throughput(f"sqlite:///{Path(tmp) / 'thr.db'}", tasks)
        report("sqlite", conc, thr, 150)
    if not args.pg:
        print("== postgresql: skipped (set DELEGATE_TEST_PG_URL or pass --pg URL)")
        return
    with fresh_pg_database(args.pg) as url:
        conc = concurrency(url, 4, count)
    with fresh_pg_database(args.pg) as url:
        thr = throughput(url, tasks)
    report("postgresql", conc, thr, 400)


if __name__ == "__main__":
    main()
