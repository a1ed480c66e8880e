"""mediacanon's own tables in the Django database (schema from the media map, `mediacanon` by default).

- `claims`: one row per canonical key, naming the source key whose bytes it holds. The primary key makes the
  claim atomic: two uploads racing for one canonical name cannot both win (a HEAD-then-copy can).
- `ledger`: one row per link, written in the same transaction as the rows' compare-and-swap, so a crash
  leaves either both or neither. It holds what reports and rollback need: source, canonical, ETag,
  sequencer, which rows changed from what.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

import psycopg
from psycopg import sql

from mediacanon.core.mediamap import FieldMapping

if TYPE_CHECKING:
    from mediacanon.adapters.db import Database, Swap

_DDL = """
CREATE TABLE IF NOT EXISTS {schema}.claims (
    canonical_key text PRIMARY KEY,
    source_key text NOT NULL,
    source_etag text,
    claimed_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS {schema}.ledger (
    id bigserial PRIMARY KEY,
    execution text,
    field text NOT NULL,
    source_key text,
    canonical_key text NOT NULL,
    etag text,
    sequencer text,
    rows_changed integer NOT NULL,
    changes jsonb NOT NULL DEFAULT '[]'::jsonb,
    retired_at timestamptz,
    rolled_back_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS ledger_canonical_key ON {schema}.ledger (canonical_key);
CREATE INDEX IF NOT EXISTS ledger_source_key ON {schema}.ledger (source_key);
CREATE INDEX IF NOT EXISTS ledger_execution ON {schema}.ledger (execution, created_at);
"""


@dataclass(frozen=True)
class LedgerEntry:
    id: int
    execution: str | None
    field: str
    source_key: str | None
    canonical_key: str
    etag: str | None
    sequencer: str | None
    rows_changed: int
    changes: list[dict[str, Any]]
    retired_at: datetime | None
    rolled_back_at: datetime | None
    created_at: datetime


class Link(NamedTuple):
    """One source's rows to its canonical key, for `Ledger.record_links`: what `record_link` takes."""

    swaps: Sequence[Swap]
    source_key: str | None
    canonical_key: str
    etag: str | None
    sequencer: str | None = None


class UnretiredLink(NamedTuple):
    """A source's latest link, its rows moved and its key not retired yet (`Ledger.unretired_links`), with the claim
    on its canonical key as it stands now."""

    source_key: str
    field: str
    canonical_key: str
    etag: str | None  # the canonical key's ETag when its rows moved there
    claimed_by: str | None  # the source key the canonical key's claim names now (None: no claim)
    claimed_etag: str | None


class Ledger:
    def __init__(self, db: Database, schema: str = "mediacanon", execution: str | None = None) -> None:
        self.db = db
        self.schema = sql.Identifier(schema)
        self.schema_name = schema
        self.execution = execution
        self._ready = False

    def _q(self, text: str) -> sql.Composed:
        return sql.SQL(text).format(schema=self.schema)  # type: ignore[arg-type]

    def ensure(self) -> None:
        """Create the schema and tables if missing (idempotent; once per process)."""
        if self._ready:
            return
        with self.db.connection() as conn, conn.transaction():
            # one creator at a time: concurrent CREATE ... IF NOT EXISTS can still collide in the catalog
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('mediacanon.ledger.ddl'))")
            # CREATE SCHEMA checks CREATE on the database even when the schema exists: skip it then, so a role
            # granted only this schema (mediacanon db grants) can run the rest
            if conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (self.schema_name,)).fetchone() is None:
                conn.execute(self._q("CREATE SCHEMA IF NOT EXISTS {schema}"))
            conn.execute(self._q(_DDL))
        self._ready = True

    def exists(self) -> bool:
        """Whether the ledger table is there, without creating it (a read-only caller changes nothing)."""
        if self._ready:
            return True
        with self.db.connection() as conn:
            found = conn.execute(
                "SELECT to_regclass(%s)", ('"{}".ledger'.format(self.schema_name.replace('"', '""')),)
            ).fetchone()
        return found is not None and found[0] is not None

    def claim(self, canonical_key: str, source_key: str, source_etag: str | None, *, take_over: bool = False) -> str:
        """Claim `canonical_key` for `source_key`; returns the source key that holds the claim afterwards."""
        self.ensure()
        with self.db.connection() as conn, conn.transaction():
            conn.execute(
                self._q(
                    "INSERT INTO {schema}.claims (canonical_key, source_key, source_etag) VALUES (%s, %s, %s) "
                    "ON CONFLICT (canonical_key) DO NOTHING"
                ),
                (canonical_key, source_key, source_etag),
            )
            if take_over:
                conn.execute(
                    self._q(
                        "UPDATE {schema}.claims SET source_key = %s, source_etag = %s, claimed_at = now() "
                        "WHERE canonical_key = %s"
                    ),
                    (source_key, source_etag, canonical_key),
                )
            row = conn.execute(
                self._q("SELECT source_key FROM {schema}.claims WHERE canonical_key = %s"), (canonical_key,)
            ).fetchone()
        assert row is not None
        return str(row[0])

    def claim_many(self, claims: Sequence[tuple[str, str, str | None]], *, take_over: bool = False) -> dict[str, str]:
        """`claim` for many canonical keys at once, each (canonical_key, source_key, source_etag): one statement with
        `take_over` (INSERT ... ON CONFLICT DO UPDATE), an INSERT and a SELECT without. Returns the source key that
        holds each canonical key's claim afterwards. A canonical key named twice ends as `claim` after `claim` would
        leave it: with `take_over` the last one holds it, without it the first."""
        self.ensure()
        wanted: dict[str, tuple[str, str | None]] = {}
        for canonical_key, source_key, source_etag in claims:
            if take_over or canonical_key not in wanted:
                wanted[canonical_key] = (source_key, source_etag)
        if not wanted:
            return {}
        keys = list(wanted)
        params = (keys, [wanted[k][0] for k in keys], [wanted[k][1] for k in keys])
        insert = (
            "INSERT INTO {schema}.claims (canonical_key, source_key, source_etag) "
            "SELECT * FROM unnest(%s::text[], %s::text[], %s::text[]) "
        )
        with self.db.connection() as conn, conn.transaction():
            if take_over:
                held = conn.execute(
                    self._q(
                        insert + "ON CONFLICT (canonical_key) DO UPDATE SET source_key = EXCLUDED.source_key, "
                        "source_etag = EXCLUDED.source_etag, claimed_at = now() RETURNING canonical_key, source_key"
                    ),
                    params,
                ).fetchall()
            else:
                conn.execute(self._q(insert + "ON CONFLICT (canonical_key) DO NOTHING"), params)
                held = conn.execute(
                    self._q("SELECT canonical_key, source_key FROM {schema}.claims WHERE canonical_key = ANY(%s)"), (keys,)
                ).fetchall()
        return {str(canonical_key): str(source_key) for canonical_key, source_key in held}

    def record_link(
        self,
        mapping: FieldMapping,
        swaps: Sequence[Swap],
        *,
        source_key: str | None,
        canonical_key: str,
        etag: str | None,
        sequencer: str | None,
    ) -> int:
        """Compare-and-swap the rows and write the ledger row in one transaction; returns rows changed."""
        self.ensure()
        if not swaps:
            return 0
        with self.db.connection() as conn, conn.transaction():
            changed = self.db.swap(mapping, swaps, conn=conn)
            if changed:
                done = {c for c in changed}
                changes = [{"id": s.row_id, "old": s.old, "new": s.new} for s in swaps if s.row_id in done]
                conn.execute(
                    self._q(
                        "INSERT INTO {schema}.ledger (execution, field, source_key, canonical_key, etag, sequencer, rows_changed, changes) "
                        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s::jsonb)"
                    ),
                    (
                        self.execution,
                        mapping.name,
                        source_key,
                        canonical_key,
                        etag,
                        sequencer,
                        len(changed),
                        json.dumps(changes, default=str),
                    ),
                )
        return len(changed)

    def record_links(self, mapping: FieldMapping, links: Sequence[Link]) -> list[int]:
        """`record_link` for many sources of one field in one transaction: one set-based compare-and-swap of all
        their rows, then one INSERT of their ledger entries, one entry per source that changed rows (as `record_link`
        writes it, so rollback still reverses each source on its own). Returns the rows changed per link, in order.
        All or nothing: an error leaves no row swapped and no entry written."""
        self.ensure()
        swaps = [swap for link in links for swap in link.swaps]
        owner = [i for i, link in enumerate(links) for _ in link.swaps]
        if not swaps:
            return [0] * len(links)
        changed: list[list[Swap]] = [[] for _ in links]
        with self.db.connection() as conn, conn.transaction():
            for position in self.db.swap_positions(mapping, swaps, conn=conn):
                changed[owner[position]].append(swaps[position])
            written = [(link, done) for link, done in zip(links, changed, strict=True) if done]
            if written:
                conn.execute(
                    self._q(
                        "INSERT INTO {schema}.ledger (execution, field, source_key, canonical_key, etag, sequencer, "
                        "rows_changed, changes) "
                        "SELECT %s, %s, v.source_key, v.canonical_key, v.etag, v.sequencer, v.rows_changed, v.changes::jsonb "
                        "FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::int[], %s::text[]) "
                        "WITH ORDINALITY AS v(source_key, canonical_key, etag, sequencer, rows_changed, changes, n) "
                        "ORDER BY v.n"  # ids in the links' order, as one record_link after another would give them
                    ),
                    (
                        self.execution,
                        mapping.name,
                        [link.source_key for link, _ in written],
                        [link.canonical_key for link, _ in written],
                        [link.etag for link, _ in written],
                        [link.sequencer for link, _ in written],
                        [len(done) for _, done in written],
                        [
                            json.dumps([{"id": s.row_id, "old": s.old, "new": s.new} for s in done], default=str)
                            for _, done in written
                        ],
                    ),
                )
        return [len(done) for done in changed]

    def mark_retired(self, source_key: str, *, key: str) -> None:
        self.ensure()
        with self.db.connection() as conn, conn.transaction():
            conn.execute(
                self._q(
                    "UPDATE {schema}.ledger SET retired_at = now() WHERE source_key = %s AND canonical_key = %s "
                    "AND retired_at IS NULL"
                ),
                (source_key, key),
            )

    def mark_retired_many(self, retired: Sequence[tuple[str, str]]) -> None:
        """`mark_retired` for many (source_key, canonical_key) pairs in one UPDATE."""
        self.ensure()
        pairs = list(dict.fromkeys(retired))
        if not pairs:
            return
        with self.db.connection() as conn, conn.transaction():
            conn.execute(
                self._q(
                    "UPDATE {schema}.ledger AS l SET retired_at = now() "
                    "FROM unnest(%s::text[], %s::text[]) AS v(source_key, canonical_key) "
                    "WHERE l.source_key = v.source_key AND l.canonical_key = v.canonical_key AND l.retired_at IS NULL"
                ),
                ([source for source, _ in pairs], [canonical for _, canonical in pairs]),
            )

    def unretired_links(self, source_keys: Sequence[str]) -> dict[str, UnretiredLink]:
        """Each of `source_keys` whose latest ledger entry moved rows off it and was neither retired nor rolled back:
        a worker that died between its commit and its delete leaves these. One statement."""
        self.ensure()
        keys = sorted(set(source_keys))
        if not keys:
            return {}
        with self.db.connection() as conn:
            rows = conn.execute(
                self._q(
                    "SELECT source_key, field, canonical_key, etag, claimed_by, claimed_etag FROM ("
                    "SELECT DISTINCT ON (l.source_key) l.source_key, l.field, l.canonical_key, l.etag, l.retired_at, "
                    "l.rolled_back_at, c.source_key AS claimed_by, c.source_etag AS claimed_etag "
                    "FROM {schema}.ledger AS l LEFT JOIN {schema}.claims AS c ON c.canonical_key = l.canonical_key "
                    "WHERE l.source_key = ANY(%s) ORDER BY l.source_key, l.id DESC"
                    ") AS latest WHERE retired_at IS NULL AND rolled_back_at IS NULL AND source_key <> canonical_key"
                ),
                (keys,),
            ).fetchall()
        return {str(row[0]): UnretiredLink(*row) for row in rows}

    def mark_rolled_back(self, entry_id: int, *, conn: psycopg.Connection[Any]) -> None:
        conn.execute(self._q("UPDATE {schema}.ledger SET rolled_back_at = now() WHERE id = %s"), (entry_id,))

    def latest_sequencer(self, canonical_key: str) -> str | None:
        self.ensure()
        with self.db.connection() as conn:
            row = conn.execute(
                self._q(
                    "SELECT sequencer FROM {schema}.ledger WHERE canonical_key = %s AND sequencer IS NOT NULL "
                    "ORDER BY id DESC LIMIT 1"
                ),
                (canonical_key,),
            ).fetchone()
        return None if row is None else str(row[0])

    def entries(self, *, execution: str | None = None, since: datetime | None = None) -> list[LedgerEntry]:
        self.ensure()
        where: list[sql.Composable] = [sql.SQL("TRUE")]
        params: list[Any] = []
        if execution is not None:
            where.append(sql.SQL("execution = %s"))
            params.append(execution)
        if since is not None:
            where.append(sql.SQL("created_at >= %s"))
            params.append(since)
        query = sql.SQL(
            "SELECT id, execution, field, source_key, canonical_key, etag, sequencer, rows_changed, changes, "
            "retired_at, rolled_back_at, created_at FROM {schema}.ledger WHERE {where} ORDER BY id"
        ).format(schema=self.schema, where=sql.SQL(" AND ").join(where))
        with self.db.connection() as conn:
            return [LedgerEntry(*row) for row in conn.execute(query, params).fetchall()]
