"""User lookups in the shop's SQLite database."""

from __future__ import annotations

import hashlib
import sqlite3


def password_hash(password: str, salt: bytes) -> str:
    """A salted hash of `password`, as the users table stores it."""
    return hashlib.pbkdf2_hmac("sha256", password.encode(), salt, 100_000).hex()


def get_user(conn: sqlite3.Connection, user_id: int) -> tuple[int, str] | None:
    """The id and name of the user `user_id`, or None."""
    row = conn.execute("SELECT id, name FROM users WHERE id = ?", (user_id,)).fetchone()
    return None if row is None else (row[0], row[1])
