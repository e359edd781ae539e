"""The SQLite schema of every durable store, versioned with ``PRAGMA user_version``.

All stores share one file, so one migration list keeps their tables consistent. Money and token
counts are INTEGER (nano-dollars), times REAL (wall seconds). A migration runs in one transaction.
"""

from __future__ import annotations

import sqlite3

__all__ = ["SCHEMA_VERSION", "migrate"]

_V1 = """
CREATE TABLE ledger_jobs (
    job_id      TEXT PRIMARY KEY,
    budget      INTEGER,                    -- NULL: unlimited
    spent       INTEGER NOT NULL DEFAULT 0,
    reserved    INTEGER NOT NULL DEFAULT 0, -- = SUM(amount) of its active leases
    active      INTEGER NOT NULL DEFAULT 0, -- = COUNT of its active leases
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL
) WITHOUT ROWID;

CREATE TABLE ledger_leases (
    lease_id    TEXT PRIMARY KEY,
    job_id      TEXT NOT NULL REFERENCES ledger_jobs(job_id),
    model       TEXT NOT NULL,
    provider    TEXT NOT NULL,
    amount      INTEGER NOT NULL,
    expires_at  REAL NOT NULL,
    state       TEXT NOT NULL,
    spent       INTEGER NOT NULL DEFAULT 0,
    closed_at   REAL
);
CREATE INDEX ledger_leases_expiry ON ledger_leases(expires_at) WHERE state = 'active';
CREATE INDEX ledger_leases_closed ON ledger_leases(closed_at) WHERE state != 'active';

CREATE TABLE ledger_job_models (
    job_id        TEXT NOT NULL,
    model         TEXT NOT NULL,
    provider      TEXT NOT NULL,
    calls         INTEGER NOT NULL,
    input_tokens  INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cost          INTEGER NOT NULL,
    PRIMARY KEY (job_id, model, provider)
) WITHOUT ROWID;

CREATE TABLE ledger_buckets (
    bucket        INTEGER NOT NULL,
    model         TEXT NOT NULL,
    provider      TEXT NOT NULL,
    calls         INTEGER NOT NULL,
    input_tokens  INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cost          INTEGER NOT NULL,
    PRIMARY KEY (bucket, model, provider)
) WITHOUT ROWID;

CREATE TABLE limiter (
    key         TEXT PRIMARY KEY,
    tat         REAL,
    held_until  REAL
) WITHOUT ROWID;

CREATE TABLE router_stats (
    model              TEXT PRIMARY KEY,
    count              INTEGER NOT NULL,
    successes          INTEGER NOT NULL,
    latency_sum_s      REAL NOT NULL,
    cost_sum_nanos     INTEGER NOT NULL,
    ttft_count         INTEGER NOT NULL,
    ttft_sum_s         REAL NOT NULL,
    decayed_weight     REAL NOT NULL,
    decayed_latency_s  REAL NOT NULL,
    decayed_successes  REAL NOT NULL,
    last_updated       REAL NOT NULL
) WITHOUT ROWID;

CREATE TABLE router_weights (
    name        TEXT PRIMARY KEY,
    value       REAL NOT NULL,
    updated_at  REAL NOT NULL
) WITHOUT ROWID;

CREATE TABLE tasks (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id          TEXT NOT NULL UNIQUE,
    kind             TEXT NOT NULL,
    pool             TEXT NOT NULL,
    payload          TEXT NOT NULL,
    priority         INTEGER NOT NULL,
    job_id           TEXT NOT NULL,
    idempotency_key  TEXT NOT NULL,
    max_attempts     INTEGER NOT NULL,
    deadline         REAL,
    state            TEXT NOT NULL,
    rank             REAL NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    worker_id        TEXT NOT NULL DEFAULT '',
    lease_until      REAL,
    available_at     REAL NOT NULL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    result           TEXT NOT NULL DEFAULT '',
    error            TEXT NOT NULL DEFAULT '',
    created_at       REAL NOT NULL,
    updated_at       REAL NOT NULL,
    finished_at      REAL
);
CREATE UNIQUE INDEX tasks_key ON tasks(idempotency_key) WHERE idempotency_key != '';
CREATE INDEX tasks_queue ON tasks(pool, rank, seq) WHERE state = 'queued';
CREATE INDEX tasks_leases ON tasks(lease_until) WHERE state = 'running';
CREATE INDEX tasks_finished ON tasks(finished_at) WHERE finished_at IS NOT NULL;
"""

_MIGRATIONS: tuple[str, ...] = (_V1,)
SCHEMA_VERSION = len(_MIGRATIONS)


def migrate(conn: sqlite3.Connection) -> None:
    """Apply the migrations this file lacks; refuse a file written by a newer Aurea."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(
                f"store schema version {version} is newer than this Aurea's {SCHEMA_VERSION}"
            )
        for script in _MIGRATIONS[version:]:
            for statement in script.split(";"):
                if statement.strip():
                    conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        conn.rollback()
        raise
    conn.commit()
