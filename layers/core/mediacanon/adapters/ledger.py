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
    from mediacanon.adapters.db import Database, Row, Swap

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
    """One source's rows to its canonical key, for `Ledger.record_links`: what `link` takes."""

    swaps: Sequence[Swap]
    source_key: str | None
    canonical_key: str
    etag: str | None
    sequencer: str | None = None


class Linked(NamedTuple):
    """What `Ledger.link` did: the rows it changed, and whether a row still references the source (None: not asked)."""

    rows_changed: int
    source_referenced: bool | None = None


class LinkGuard(NamedTuple):
    """`Ledger.link_guard`: the latest sequencer linked to a key; the rollback entry that reversed this link, if
    one did; whether this link's source was retired already."""

    latest_sequencer: str | None
    rolled_back_entry: int | None
    retired: bool = False
    source_rows: list[Row] = []


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
        """Claim `canonical_key` for `source_key`; returns the source key that holds the claim afterwards.

        One statement, so one round trip on an autocommit connection (a statement is its own transaction): with
        `take_over` an upsert that returns the new holder; without it an insert that, when another source holds
        the key already, returns that holder instead (read in the same statement, under the conflict's row lock)."""
        self.ensure()
        if take_over:
            query = self._q(
                "INSERT INTO {schema}.claims (canonical_key, source_key, source_etag) VALUES (%s, %s, %s) "
                "ON CONFLICT (canonical_key) DO UPDATE SET source_key = EXCLUDED.source_key, "
                "source_etag = EXCLUDED.source_etag, claimed_at = now() RETURNING source_key"
            )
        else:
            # DO UPDATE with an unchanged value locks and returns the existing row (DO NOTHING would return nothing,
            # and a separate SELECT may run before a concurrent claimer commits)
            query = self._q(
                "INSERT INTO {schema}.claims AS c (canonical_key, source_key, source_etag) VALUES (%s, %s, %s) "
                "ON CONFLICT (canonical_key) DO UPDATE SET source_key = c.source_key RETURNING source_key"
            )
        with self.db.statement() as conn:
            row = conn.execute(query, (canonical_key, source_key, source_etag)).fetchone()
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

    def link(
        self,
        mapping: FieldMapping,
        swaps: Sequence[Swap],
        *,
        source_key: str | None,
        canonical_key: str,
        etag: str | None,
        sequencer: str | None,
        source_value: str | None = None,
    ) -> Linked:
        """Compare-and-swap the rows and write the ledger entry of those it changed, both or neither; with
        `source_value` (the source's column value), also whether any row still references it once the swaps are done:
        what retiring the source waits for (I2).

        Swaps that name each row once and fit one statement (the live path's: a source's few rows) go in ONE
        statement, so one round trip: the UPDATE, the ledger INSERT of the rows it changed, and the count of the rows
        still on the source, as data-modifying CTEs (one snapshot, one implicit transaction: both or neither).
        Others take `Database.swap_positions`' statements and an INSERT, in one transaction."""
        self.ensure()
        if not swaps:
            return Linked(0, None if source_value is None else self._referenced(mapping, source_value))
        swap_query, groups = self.db.swap_statements(mapping, swaps)
        entry = [{"id": s.row_id, "old": s.old, "new": s.new} for s in swaps]
        if len(groups) == 1:
            table = self.db.table(mapping)
            remaining: sql.Composable = sql.SQL("NULL::bigint")
            if source_value is not None:
                # the snapshot is the statement's: rows on the source before it, less those it moved off the source
                remaining = sql.SQL(
                    "(SELECT count(*) FROM {table} WHERE {col} = %(source_value)s) - "
                    "(SELECT count(*) FROM mc_s WHERE (%(olds)s::text[])[mc_s.pos + 1] = %(source_value)s)"
                ).format(table=table, col=sql.Identifier(mapping.column))
            query = sql.SQL(
                "WITH mc_s AS ({swap}), mc_l AS ("
                "INSERT INTO {schema}.ledger (execution, field, source_key, canonical_key, etag, sequencer, rows_changed, "
                "changes) SELECT %(execution)s, %(field)s, %(source_key)s, %(canonical_key)s, %(etag)s, %(sequencer)s, "
                "count(*), jsonb_agg((%(entry)s::text[])[mc_s.pos + 1]::jsonb ORDER BY mc_s.pos) FROM mc_s "
                "HAVING count(*) > 0 RETURNING 1) "
                "SELECT (SELECT count(*) FROM mc_s), {remaining}"
            ).format(swap=swap_query, schema=self.schema, remaining=remaining)
            params = {
                **groups[0],
                "execution": self.execution,
                "field": mapping.name,
                "source_key": source_key,
                "canonical_key": canonical_key,
                "etag": etag,
                "sequencer": sequencer,
                "entry": [json.dumps(e, default=str) for e in entry],
                "source_value": source_value,
            }
            with self.db.statement() as conn:
                row = conn.execute(query, params).fetchone()
            assert row is not None
            return Linked(int(row[0]), None if row[1] is None else row[1] > 0)
        with self.db.connection() as conn, conn.transaction():
            changed = self.db.swap(mapping, swaps, conn=conn)
            if changed:
                done = {c for c in changed}
                changes = [e for s, e in zip(swaps, entry, strict=True) if s.row_id in done]
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
        return Linked(len(changed), None if source_value is None else self._referenced(mapping, source_value))

    def _referenced(self, mapping: FieldMapping, value: str) -> bool:
        return bool(self.db.rows_referencing(mapping, [value]).get(value))

    def record_links(self, mapping: FieldMapping, links: Sequence[Link]) -> list[int]:
        """`link` for many sources of one field in one transaction: one set-based compare-and-swap of all
        their rows, then one INSERT of their ledger entries, one entry per source that changed rows (as `link`
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
                        "ORDER BY v.n"  # ids in the links' order, as one link after another would give them
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
        """Mark the link's source retired (deleted): one statement, one round trip."""
        self.ensure()
        with self.db.statement() as conn:
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

    def link_guard(
        self,
        canonical_key: str,
        source_key: str | None,
        etag: str | None,
        *,
        mapping: FieldMapping | None = None,
        source_value: str | None = None,
    ) -> LinkGuard:
        """What a link of `canonical_key` (from `source_key`, these bytes: `etag`) needs to know before it moves rows,
        in ONE query: the latest sequencer the ledger holds for the key; the latest entry linking this source to these
        bytes: whether a rollback reversed it (its id) and whether its source was retired; and, given the mapping and
        the source's column value, the rows that reference the source (what the link moves). A rollback puts the
        rows back on the source; an event still queued from before it must not move them again, while a new upload
        under the source (other bytes) may."""
        from mediacanon.adapters.db import Row

        self.ensure()
        rows: sql.Composable = sql.SQL("(SELECT NULL, NULL, NULL, NULL WHERE false)")
        if mapping is not None and source_value is not None:
            rows = sql.SQL("({})").format(self.db.referencing_query(mapping, sql.Placeholder("values")))
        query = sql.SQL(
            "SELECT g.*, r.* FROM (SELECT (SELECT sequencer FROM {schema}.ledger WHERE canonical_key = %(key)s "
            "AND sequencer IS NOT NULL ORDER BY id DESC LIMIT 1), l.id, l.rolled_back_at IS NOT NULL, "
            "l.retired_at IS NOT NULL FROM (SELECT 1) AS one LEFT JOIN LATERAL (SELECT id, rolled_back_at, "
            "retired_at FROM {schema}.ledger WHERE source_key = %(source)s AND canonical_key = %(key)s "
            "AND etag = %(etag)s ORDER BY id DESC LIMIT 1) AS l ON true) AS g "
            "LEFT JOIN LATERAL {rows} AS r ON true"
        ).format(schema=self.schema, rows=rows)
        params = {"key": canonical_key, "source": source_key, "etag": etag, "values": [source_value]}
        with self.db.connection() as conn:
            found = conn.execute(query, params).fetchall()
        assert found
        latest, entry, rolled_back, retired = found[0][:4]
        return LinkGuard(
            None if latest is None else str(latest),
            entry if rolled_back else None,
            entry is not None and bool(retired),
            [Row(*row[4:]) for row in found if row[4] is not None],
        )

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
