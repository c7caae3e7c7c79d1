"""Full-text search SQL for the store: SQLite FTS5 and PostgreSQL tsvector, bound parameters only.

Callers pass words already reduced to letters and digits (`Store.search_memories` does), so
each word is data: quoted as an FTS5 string on SQLite, one `plainto_tsquery` each on
PostgreSQL. Both return memory ids, best match first, latest versions only.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Connection, func, select, text

from delegate.memory.schema import MemoryRow

__all__ = ["is_latest", "pg_search", "sqlite_search"]

_M2 = MemoryRow.__table__.alias("m2").c


def is_latest() -> ColumnElement[bool]:
    """A condition on MemoryRow: this row is the latest version of its (namespace, key)."""
    newer = select(func.max(_M2.version)).where(
        _M2.namespace == MemoryRow.namespace, _M2.key == MemoryRow.key
    )
    return MemoryRow.version == newer.scalar_subquery()


def _filters_sql(namespaces: list[str], tags: list[str], params: dict[str, Any]) -> str:
    """SQL conditions on alias `m` (latest version, namespace, tags), bound parameters only."""
    ns_names = []
    for i, namespace in enumerate(namespaces):
        params[f"ns{i}"] = namespace
        ns_names.append(f":ns{i}")
    sql = (
        f" AND m.namespace IN ({', '.join(ns_names)})"
        " AND m.version = (SELECT max(m2.version) FROM memories m2"
        " WHERE m2.namespace = m.namespace AND m2.key = m.key)"
    )
    if tags:
        tag_names = []
        for i, tag in enumerate(tags):
            params[f"tag{i}"] = tag
            tag_names.append(f":tag{i}")
        params["ntags"] = len(tags)
        sql += (
            " AND (SELECT count(*) FROM memory_tags t WHERE t.memory_id = m.id"
            f" AND t.tag IN ({', '.join(tag_names)})) = :ntags"
        )
    return sql


def sqlite_search(
    conn: Connection, words: list[str], namespaces: list[str], tags: list[str], limit: int
) -> list[int]:
    # Each word is letters and digits only, quoted: an FTS5 string, never an operator.
    params: dict[str, Any] = {"match": " OR ".join(f'"{w}"' for w in words), "limit": limit}
    sql = (
        "SELECT m.id FROM memories_fts f JOIN memories m ON m.id = f.rowid"
        " WHERE memories_fts MATCH :match"
        + _filters_sql(namespaces, tags, params)
        + " ORDER BY bm25(memories_fts, 10.0, 5.0, 1.0), m.namespace, m.key LIMIT :limit"
    )
    return [row[0] for row in conn.execute(text(sql), params)]


def pg_search(
    conn: Connection, words: list[str], namespaces: list[str], tags: list[str], limit: int
) -> list[int]:
    params: dict[str, Any] = {"limit": limit}
    parts = []
    for i, word in enumerate(words):
        params[f"w{i}"] = word
        parts.append(f"plainto_tsquery('simple', :w{i})")
    sql = (
        f"SELECT m.id FROM memories m, (SELECT {' || '.join(parts)} AS tsq) q"
        " WHERE m.search @@ q.tsq"
        + _filters_sql(namespaces, tags, params)
        + " ORDER BY ts_rank(m.search, q.tsq) DESC, m.namespace, m.key LIMIT :limit"
    )
    return [row[0] for row in conn.execute(text(sql), params)]
