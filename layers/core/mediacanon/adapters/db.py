"""The PostgreSQL adapter: the Django tables mediacanon reads and compare-and-swaps, and nothing else.

Parameterized SQL only; table and column names (from the media map) are composed with `psycopg.sql`.
psycopg errors are translated here, by SQLSTATE class and exception type, into the project's
RetryableError / PermanentError family.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from itertools import islice, pairwise
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from mediacanon.core.errors import MediacanonError, PermanentError, RetryableError, translating
from mediacanon.core.mediamap import FieldMapping

if TYPE_CHECKING:  # psycopg_pool only where a pool is passed in: its caller has imported it (a cold start does not)
    from psycopg_pool import ConnectionPool

LOOKUP_BATCH = 1000  # values per `= ANY(%s)` query: bounded statements however many keys a page holds
SWAP_BATCH = 1000  # rows per set-based compare-and-swap statement (one transaction holds them all)
CHARACTER_TYPES = ("character varying", "character", "text")
# SQLSTATE classes that go away by themselves: connection exception, transaction rollback (serialization
# failure, deadlock), insufficient resources (too many connections), operator intervention (query canceled,
# admin shutdown), system error
RETRYABLE_CLASSES = frozenset({"08", "40", "53", "57", "58"})
RETRYABLE_STATES = frozenset({"55P03", "55006"})  # lock not available, object in use
# authorization and catalog-name failures surface as OperationalError at connect time, yet retrying cannot fix them
PERMANENT_CLASSES = frozenset({"28", "3D"})


class SchemaMismatchError(PermanentError):
    """A field mapping names a table or column the database does not have (or not of a usable type)."""

    def __init__(self, mapping: FieldMapping, where: str, problem: str, fix: str) -> None:
        self.field = mapping.name
        self.where = where
        self.problem = problem
        self.fix = fix
        super().__init__(f"field {mapping.name}: {where}: {problem} (fix: {fix})")


@dataclass(frozen=True)
class Row:
    id: Any
    slug: str
    value: str | None  # the column as Django stores it: the key without the storage's location prefix
    tenant: str | None = None


class Swap(NamedTuple):
    row_id: Any
    old: str | None  # what the row must still hold; None or '' for an empty column
    new: str | None  # None empties the column again (a rollback of a link by slug)


@dataclass(frozen=True)
class _Checked:
    schema: str
    max_length: int
    id_type: sql.Composable  # the id column's type (a domain's base type), for typed arrays of ids
    column_length: int | None = None  # the file column's own varchar(N); None for text


def translate_error(exc: psycopg.Error, what: str) -> MediacanonError:
    """The project's error for a psycopg error, by SQLSTATE class and exception type, never by message text."""
    state = exc.sqlstate or ""
    message = f"{what}: {type(exc).__name__}{f' [{state}]' if state else ''}: {exc}"
    if state[:2] in PERMANENT_CLASSES:
        return PermanentError(message)
    if state[:2] in RETRYABLE_CLASSES or state in RETRYABLE_STATES:
        return RetryableError(message)
    if not state and isinstance(exc, psycopg.OperationalError):  # connection refused or lost, pool timeout
        return RetryableError(message)
    return PermanentError(message)


def _translated(what: str) -> AbstractContextManager[None]:
    return translating(what, psycopg.Error, translate_error)


def _batches(items: Sequence[str], size: int) -> Iterator[list[str]]:
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch


def key_order(mapping: FieldMapping) -> list[sql.Composable]:
    """The rows phase's order: the order S3 lists the rows' keys in. S3 lists keys in UTF-8 binary order and
    PostgreSQL's "C" collation compares UTF-8 text byte by byte, so rows sorted by the file column COLLATE "C" come
    in the order S3 lists their keys (the location is one prefix for all; a tenant-scoped field sorts by tenant
    first, so each tenant's rows are together). The id breaks ties, so ranges split anywhere, even inside thousands
    of rows sharing one file."""
    order: list[sql.Composable] = []
    if mapping.tenant_column:
        order.append(sql.SQL('({}::text) COLLATE "C"').format(sql.Identifier(mapping.tenant_column)))
    order.append(sql.SQL('{} COLLATE "C"').format(sql.Identifier(mapping.column)))
    order.append(sql.Identifier(mapping.id_column))
    return order


def key_order_index(mapping: FieldMapping, schema: str) -> sql.Composed:
    """The index that serves `key_order`, as `CREATE INDEX CONCURRENTLY` (no write lock on the table while it
    builds) for the team to apply (`mediacanon db indexes`). Without it each rows range's read scans the table."""
    name = f"mediacanon_{mapping.table}_{mapping.column}_key_order"[:63]
    return sql.SQL("CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {table} ({order});").format(
        name=sql.Identifier(name), table=sql.Identifier(schema, mapping.table), order=sql.SQL(", ").join(key_order(mapping))
    )


def _index_in(plan: Any) -> str | None:
    """The first index an EXPLAIN (FORMAT JSON) plan reads, depth first."""
    if isinstance(plan, list):
        return next((found for node in plan if (found := _index_in(node)) is not None), None)
    if isinstance(plan, dict):
        if plan.get("Index Name"):
            return str(plan["Index Name"])
        return _index_in(plan.get("Plan") or plan.get("Plans") or [])
    return None


def _swap_statements(changes: Sequence[Swap]) -> Iterator[list[int]]:
    """The positions of `changes`, in order, cut into runs of at most SWAP_BATCH that name each row once: a run
    ends before a row it already names (an UPDATE ... FROM changes a row once, whatever else matches it)."""
    run: list[int] = []
    ids: set[str] = set()
    for i, change in enumerate(changes):
        row = str(change.row_id)
        if len(run) == SWAP_BATCH or row in ids:
            yield run
            run, ids = [], set()
        run.append(i)
        ids.add(row)
    if run:
        yield run


class Database:
    """Takes a conninfo string (one autocommit connection, opened lazily and reopened when broken), a
    psycopg_pool.ConnectionPool, or a connection (used as is; autocommit recommended)."""

    def __init__(self, source: str | psycopg.Connection[Any] | ConnectionPool[Any], *, connect_timeout: int = 10) -> None:
        self._conninfo = source if isinstance(source, str) else None
        pools = sys.modules.get("psycopg_pool")  # a pool passed in means its module is imported
        self._pool = cast("ConnectionPool[Any]", source) if pools and isinstance(source, pools.ConnectionPool) else None
        self._conn: psycopg.Connection[Any] | None = source if isinstance(source, psycopg.Connection) else None
        self._connect_timeout = connect_timeout
        self._checked: dict[tuple[Any, ...], _Checked] = {}

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection this instance opened itself; injected connections and pools are the caller's."""
        if self._conninfo is not None and self._conn is not None:
            self._conn.close()
            self._conn = None

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection for one unit of work; psycopg errors raised inside the block are translated."""
        with _translated("database"):
            if self._pool is not None:
                with self._pool.connection() as conn:
                    yield conn
                return
            if self._conninfo is not None and (self._conn is None or self._conn.closed or self._conn.broken):
                conninfo = self._conninfo
                if "connect_timeout" not in conninfo_to_dict(conninfo):  # an unreachable host fails fast, not in minutes
                    conninfo = make_conninfo(conninfo, connect_timeout=self._connect_timeout)
                self._conn = psycopg.connect(conninfo, autocommit=True, prepare_threshold=None)  # RDS Proxy: no pinning
            assert self._conn is not None
            yield self._conn

    @contextmanager
    def statement(self) -> Iterator[psycopg.Connection[Any]]:
        """`connection`, for work done in one statement: on an autocommit connection a statement is its own
        transaction (one round trip; no BEGIN and COMMIT around it); on any other it runs in a transaction committed
        at the end of the block, as `conn.transaction()` would."""
        with self.connection() as conn:
            if conn.autocommit:
                yield conn
            else:
                with conn.transaction():
                    yield conn

    # -- schema check ------------------------------------------------------------------------------------------

    def check_field(self, mapping: FieldMapping, *, conn: psycopg.Connection[Any] | None = None) -> int:
        """Check the mapping's table and columns exist (in the search path) and the file column holds text;
        returns the effective max_length: the smaller of the media map's and the column's. Checked once per
        mapping per instance."""
        return self._checked_for(mapping, conn).max_length

    def column_length(self, mapping: FieldMapping) -> int | None:
        """The file column's declared length (varchar(N)), None for an unbounded text column; checks the mapping."""
        return self._checked_for(mapping).column_length

    def _checked_for(self, mapping: FieldMapping, conn: psycopg.Connection[Any] | None = None) -> _Checked:
        # FieldMapping holds a dict, so it is not hashable: key the cache by what the check depends on
        cache_key = (
            mapping.table,
            mapping.column,
            mapping.slug_column,
            mapping.id_column,
            mapping.tenant_column,
            mapping.max_length,
        )
        if cache_key not in self._checked:
            with self._maybe_connection(conn) as use, _translated(f"check {mapping.table}.{mapping.column}"):
                self._checked[cache_key] = self._check(mapping, use)
        return self._checked[cache_key]

    def _check(self, mapping: FieldMapping, conn: psycopg.Connection[Any]) -> _Checked:
        # the first schema of the search path that has the table, as an unqualified name would resolve
        found = conn.execute(
            "SELECT t.table_schema FROM information_schema.tables t "
            "JOIN unnest(current_schemas(false)) WITH ORDINALITY AS s(name, pos) ON s.name = t.table_schema "
            "WHERE t.table_name = %s ORDER BY s.pos LIMIT 1",
            (mapping.table,),
        ).fetchone()
        if found is None:
            raise SchemaMismatchError(
                mapping,
                f"table {mapping.table}",
                "does not exist in the search path (or this user may not see it)",
                "run Django's migrations, or set 'table' to the model's db_table",
            )
        schema = str(found[0])
        columns = {
            name: (data_type, length, sql.Identifier(udt_schema, udt_name))
            for name, data_type, length, udt_schema, udt_name in conn.execute(
                "SELECT column_name, data_type, character_maximum_length, udt_schema, udt_name "
                "FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
                (schema, mapping.table),
            ).fetchall()
        }
        for role, column in (
            ("column", mapping.column),
            ("slug_column", mapping.slug_column),
            ("id_column", mapping.id_column),
            ("tenant_column", mapping.tenant_column),
        ):
            if column is not None and column not in columns:
                raise SchemaMismatchError(
                    mapping,
                    f"{mapping.table}.{column}",
                    f"no such column ({role})",
                    f"set '{role}' to one of: {', '.join(sorted(columns))}",
                )
        data_type, length, _ = columns[mapping.column]
        if data_type not in CHARACTER_TYPES:
            raise SchemaMismatchError(
                mapping,
                f"{mapping.table}.{mapping.column}",
                f"is {data_type}, not a character column",
                "point 'column' at the FileField/ImageField column (varchar)",
            )
        max_length = min(mapping.max_length, length) if length is not None else mapping.max_length
        # udt_name is the type's own name ("int8", "uuid", "varchar", "bpchar"): no typmod, so no cast can truncate
        return _Checked(schema, max_length, columns[mapping.id_column][2], length)

    # -- reads -------------------------------------------------------------------------------------------------

    def _select(self, mapping: FieldMapping) -> sql.Composed:
        checked = self._checked_for(mapping)
        tenant = sql.SQL("{}::text").format(sql.Identifier(mapping.tenant_column)) if mapping.tenant_column else sql.SQL("NULL")
        return sql.SQL("SELECT {id}, {slug}, {col}, {tenant} FROM {table}").format(
            id=sql.Identifier(mapping.id_column),
            slug=sql.Identifier(mapping.slug_column),
            col=sql.Identifier(mapping.column),
            tenant=tenant,
            table=sql.Identifier(checked.schema, mapping.table),
        )

    def table(self, mapping: FieldMapping) -> sql.Identifier:
        """The mapping's table, schema-qualified as the schema check found it."""
        return sql.Identifier(self._checked_for(mapping).schema, mapping.table)

    def _tenant_filter(self, mapping: FieldMapping, tenant: str | None) -> tuple[sql.Composable, tuple[Any, ...]]:
        if tenant is None or not mapping.tenant_column:
            return sql.SQL(""), ()
        return sql.SQL(" AND {}::text = %s").format(sql.Identifier(mapping.tenant_column)), (tenant,)

    def referencing_query(self, mapping: FieldMapping, param: sql.Composable | None = None) -> sql.Composed:
        """`rows_referencing`'s query: the rows whose file column is one of an array parameter (`param`, default %s),
        in id order, as (id, slug, value, tenant)."""
        return sql.SQL("{select} WHERE {col} = ANY({param}) ORDER BY {id}").format(
            select=self._select(mapping),
            col=sql.Identifier(mapping.column),
            id=sql.Identifier(mapping.id_column),
            param=param if param is not None else sql.Placeholder(),
        )

    def rows_referencing(self, mapping: FieldMapping, values: Sequence[str]) -> dict[str, list[Row]]:
        """The rows whose file column holds each value (only values some row holds appear)."""
        query = self.referencing_query(mapping)
        out: dict[str, list[Row]] = {}
        with self.connection() as conn:
            for batch in _batches(sorted(set(values)), LOOKUP_BATCH):
                for row in conn.execute(query, (batch,)):
                    out.setdefault(row[2], []).append(Row(*row))
        return out

    def rows_by_slug(self, mapping: FieldMapping, slugs: Sequence[str], tenant: str | None = None) -> dict[str, Row]:
        """The row of each slug (of `tenant`, when given); with several, the lowest id."""
        tenant_sql, tenant_params = self._tenant_filter(mapping, tenant)
        query = sql.SQL("{select} WHERE {slug} = ANY(%s){tenant} ORDER BY {id}").format(
            select=self._select(mapping),
            slug=sql.Identifier(mapping.slug_column),
            tenant=tenant_sql,
            id=sql.Identifier(mapping.id_column),
        )
        out: dict[str, Row] = {}
        with self.connection() as conn:
            for batch in _batches(sorted(set(slugs)), LOOKUP_BATCH):
                for row in conn.execute(query, (batch, *tenant_params)):
                    out.setdefault(row[1], Row(*row))
        return out

    def iter_rows(
        self, mapping: FieldMapping, batch_size: int = 1000, *, start_id: Any = None, end_id: Any = None
    ) -> Iterator[Row]:
        """Every row, in id order, one keyset page per query (no connection is held between pages);
        `start_id` inclusive, `end_id` exclusive, so ranges can be split between workers without overlap."""
        ident = sql.Identifier(mapping.id_column)
        select = self._select(mapping)
        last, first = start_id, True
        while True:
            where, params = [], []
            if last is not None:
                where.append(sql.SQL("{} >= %s" if first else "{} > %s").format(ident))
                params.append(last)
            if end_id is not None:
                where.append(sql.SQL("{} < %s").format(ident))
                params.append(end_id)
            query = sql.SQL("{select}{where} ORDER BY {id} LIMIT %s").format(
                select=select, where=sql.SQL(" WHERE ") + sql.SQL(" AND ").join(where) if where else sql.SQL(""), id=ident
            )
            with self.connection() as conn:
                rows = conn.execute(query, (*params, batch_size)).fetchall()
            yield from (Row(*row) for row in rows)
            if len(rows) < batch_size:
                return
            last, first = rows[-1][0], False

    # -- the rows phase, in key order (`key_order`) -------------------------------------------------------------

    def _key_range_query(
        self, mapping: FieldMapping, start: Sequence[Any] | None, end: Sequence[Any] | None
    ) -> tuple[sql.Composed, list[Any]]:
        order = sql.SQL(", ").join(key_order(mapping))
        where: list[sql.Composable] = [sql.SQL("{} <> ''").format(sql.Identifier(mapping.column))]
        params: list[Any] = []
        for bound, op in ((start, ">="), (end, "<")):
            if bound is not None:
                marks = sql.SQL(", ").join([sql.Placeholder()] * len(bound))
                where.append(sql.SQL("({order}) {op} ({marks})").format(order=order, op=sql.SQL(op), marks=marks))
                params.extend(bound)
        query = sql.SQL("{select} WHERE {where} ORDER BY {order}").format(
            select=self._select(mapping), where=sql.SQL(" AND ").join(where), order=order
        )
        return query, params

    def rows_in_key_range(
        self, mapping: FieldMapping, start: Sequence[Any] | None = None, end: Sequence[Any] | None = None
    ) -> list[Row]:
        """The rows with a file whose (tenant, file, id) lies in [start, end) in key order (`key_ranges`' bounds;
        None: open), in that order, in one query: an index range scan with `key_order_index`, else a scan."""
        query, params = self._key_range_query(mapping, start, end)
        with self.connection() as conn:
            return [Row(*row) for row in conn.execute(query, params)]

    def key_ranges(self, mapping: FieldMapping, rows_per_range: int) -> list[tuple[list[Any] | None, list[Any] | None]]:
        """[start, end) bounds in key order holding about `rows_per_range` rows with a file each (the first and the
        last open, so rows added since are in one), from one query: the server numbers the rows in key order once
        and returns every `rows_per_range`-th row's (tenant, file, id)."""
        order = sql.SQL(", ").join(key_order(mapping))
        width = len(key_order(mapping))
        query = sql.SQL(
            "SELECT * FROM (SELECT {order}, row_number() OVER (ORDER BY {order}) AS mc_n FROM {table} WHERE {col} <> '') "
            "AS mc_s WHERE mc_n %% %s = 1 AND mc_n > 1 ORDER BY mc_n"
        ).format(
            order=order,
            table=sql.Identifier(self._checked_for(mapping).schema, mapping.table),
            col=sql.Identifier(mapping.column),
        )
        with self.connection() as conn:
            cuts = [list(row[:width]) for row in conn.execute(query, (rows_per_range,))]
        bounds: list[list[Any] | None] = [None, *cuts, None]
        return list(pairwise(bounds))

    def key_order_index_in_use(self, mapping: FieldMapping) -> str | None:
        """The index a key-ordered read would use (its name), or None when it would scan and sort the table: asked
        of the planner with sequential scans priced out, so any index that serves the order counts, whatever its
        name (EXPLAIN runs nothing)."""
        query, params = self._key_range_query(mapping, None, None)
        with self.connection() as conn, conn.transaction():
            conn.execute("SET LOCAL enable_seqscan = off")
            (plan,) = conn.execute(sql.SQL("EXPLAIN (FORMAT JSON) ") + query, params).fetchone() or (None,)
        return _index_in(plan)

    # -- writes ------------------------------------------------------------------------------------------------

    def swap_statements(
        self, mapping: FieldMapping, changes: Sequence[Swap], *, conn: psycopg.Connection[Any] | None = None
    ) -> tuple[sql.Composed, list[dict[str, Any]]]:
        """The compare-and-swap `swap_positions` runs: one statement, and its parameters once per run of at most
        SWAP_BATCH changes that names each row once (`_swap_statements`). Each returns the positions in `changes` of
        the swaps that changed their row (column `pos`). Checks every new value against the column's max_length."""
        checked = self._checked_for(mapping, conn)
        max_length = checked.max_length
        for change in changes:
            if change.new is not None and len(change.new) > max_length:
                raise PermanentError(
                    f"field {mapping.name}: {change.new!r} is {len(change.new)} characters, longer than "
                    f"{mapping.table}.{mapping.column} max_length {max_length}: raise max_length or shorten the name"
                )
        col, ident = sql.Identifier(mapping.column), sql.Identifier(mapping.id_column)
        # ids travel as text and are cast to the id column's own type (bigint, integer, uuid, varchar, a domain's
        # base): the key compares like with like, so its index serves both conditions. `= ANY(ids)` bounds the scan
        # to the statement's rows whatever join the planner picks (a merge join would walk the index from its start).
        # '' and NULL both mean "no file" to Django: an empty old value (sent as '') matches either.
        ids = sql.SQL("%(ids)s::text[]::{}[]").format(checked.id_type)
        query = sql.SQL(
            "UPDATE {table} AS mc_t SET {col} = mc_v.new "
            "FROM unnest({ids}, %(olds)s::text[], %(news)s::text[], %(positions)s::int[]) AS mc_v(id, old, new, pos) "
            "WHERE mc_t.{id} = ANY({ids}) AND mc_t.{id} = mc_v.id "
            "AND (mc_t.{col} = mc_v.old OR (mc_v.old = '' AND mc_t.{col} IS NULL)) RETURNING mc_v.pos"
        ).format(table=sql.Identifier(checked.schema, mapping.table), col=col, id=ident, ids=ids)
        params = [
            {
                "ids": [str(changes[i].row_id) for i in group],
                "olds": [changes[i].old or "" for i in group],
                "news": [changes[i].new for i in group],
                "positions": group,
            }
            for group in _swap_statements(changes)
        ]
        return query, params

    def swap(self, mapping: FieldMapping, changes: Sequence[Swap], *, conn: psycopg.Connection[Any] | None = None) -> list[Any]:
        """Compare-and-swap file columns, all in one transaction: a row changes only if it still holds `old`
        (a concurrent edit in Django wins). Returns the ids of the rows changed, as `changes` names them, in its order.

        Given `conn`, runs inside the caller's transaction (the ledger writes its entry in the same one)."""
        return [changes[i].row_id for i in self.swap_positions(mapping, changes, conn=conn)]

    def swap_positions(
        self, mapping: FieldMapping, changes: Sequence[Swap], *, conn: psycopg.Connection[Any] | None = None
    ) -> list[int]:
        """`swap`, returning the positions in `changes` of the swaps that changed their row (ascending), so a caller
        that swaps for several owners at once can tell whose rows changed.

        Set-based: one `UPDATE ... FROM unnest(ids, olds, news)` per SWAP_BATCH changes, sent together; a statement
        never names a row twice, so swaps of one row (old -> a, then a -> b) apply one after the other, in order."""
        if not changes:
            return []
        query, params = self.swap_statements(mapping, changes, conn=conn)
        changed: list[int] = []
        with self._maybe_connection(conn) as use, _translated(f"swap {mapping.table}.{mapping.column}"), use.transaction():
            cur = use.cursor()
            cur.executemany(query, params, returning=True)
            while True:
                changed.extend(sorted(row[0] for row in cur.fetchall()))
                if not cur.nextset():
                    break
        return changed

    @contextmanager
    def _maybe_connection(self, conn: psycopg.Connection[Any] | None) -> Iterator[psycopg.Connection[Any]]:
        if conn is not None:
            yield conn
        else:
            with self.connection() as own:
                yield own
