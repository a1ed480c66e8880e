"""The PostgreSQL adapter against a real PostgreSQL: schema checks, reads, compare-and-swap, error translation."""

from __future__ import annotations

import dataclasses
import uuid
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg import errors as pg_errors
from psycopg import sql
from support.helpers import find_owner

from mediacanon.adapters import db as db_module
from mediacanon.adapters.db import Database, Row, SchemaMismatchError, Swap, translate_error
from mediacanon.core.errors import PermanentError, RetryableError
from mediacanon.core.mediamap import FieldMapping
from mediacanon.local.embedded import free_port

pytestmark = pytest.mark.integration

ICON = FieldMapping(
    name="archive.PublicationSource.icon",
    table="archive_publicationsource",
    column="icon",
    slug_column="slug",
    upload_to="icons/",
    canonical="icons/{slug}{ext}",
    max_length=100,
)
TENANT_ICON = FieldMapping(
    name="tenants.TenantPublication.icon",
    table="tenants_tenantpublication",
    column="icon",
    slug_column="slug",
    upload_to="icons/",
    canonical="icons/{slug}{ext}",
    location="{tenant}/",
    tenant_column="tenant_id",
)


def run(conninfo: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


@pytest.fixture
def conninfo(db_conninfo: str) -> str:
    run(
        db_conninfo,
        """
        CREATE TABLE archive_publicationsource (
            id serial PRIMARY KEY, slug varchar(50) UNIQUE NOT NULL, icon varchar(60), masthead varchar(255), name text,
            founded integer);
        CREATE TABLE tenants_tenantpublication (id bigserial PRIMARY KEY, tenant_id integer NOT NULL, slug varchar(50),
            icon varchar(100));
    """,
    )
    return db_conninfo


def add(conninfo: str, slug: str, icon: str | None) -> int:
    return int(run(conninfo, "INSERT INTO archive_publicationsource (slug, icon) VALUES (%s, %s) RETURNING id", slug, icon)[0][0])


def icons(conninfo: str) -> dict[str, str | None]:
    return dict(run(conninfo, "SELECT slug, icon FROM archive_publicationsource"))  # type: ignore[arg-type]


# -- check_field -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "names"),
    [
        ({"table": "archive_publication"}, "archive_publication"),
        ({"column": "favicon"}, "archive_publicationsource.favicon"),
        ({"slug_column": "code"}, "archive_publicationsource.code"),
        ({"id_column": "pk"}, "archive_publicationsource.pk"),
        ({"tenant_column": "tenant"}, "archive_publicationsource.tenant"),
        ({"column": "founded"}, "archive_publicationsource.founded"),  # an integer column cannot hold a key
    ],
)
def test_check_field_names_what_is_wrong_and_the_fix(conninfo: str, change: dict[str, Any], names: str) -> None:
    with Database(conninfo) as db, pytest.raises(SchemaMismatchError) as info:
        db.check_field(dataclasses.replace(ICON, **change))
    assert names in str(info.value)
    assert "fix:" in str(info.value)
    assert isinstance(info.value, PermanentError)


@pytest.mark.parametrize(
    ("column", "map_length", "effective"),
    [("icon", 100, 60), ("masthead", 100, 100), ("masthead", 300, 255), ("name", 120, 120)],
    ids=["column-shorter", "map-shorter", "column-caps-map", "text-unbounded"],
)
def test_check_field_returns_the_smaller_max_length(conninfo: str, column: str, map_length: int, effective: int) -> None:
    with Database(conninfo) as db:
        assert db.check_field(dataclasses.replace(ICON, column=column, max_length=map_length)) == effective


def test_check_field_follows_the_search_path(conninfo: str) -> None:
    run(conninfo, "CREATE SCHEMA django; CREATE TABLE django.media (id serial PRIMARY KEY, slug text, file varchar(40))")
    mapping = dataclasses.replace(ICON, table="media", column="file")
    with Database(conninfo) as db, pytest.raises(SchemaMismatchError):
        db.check_field(mapping)
    with Database(conninfo + " options='-c search_path=django,public'") as db:
        assert db.check_field(mapping) == 40
        assert db.rows_by_slug(mapping, ["x"]) == {}


# -- reads -----------------------------------------------------------------------------------------------------------


def test_rows_referencing_batches_the_values(conninfo: str, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = {slug: add(conninfo, slug, f"icons/{slug}.png") for slug in ("a", "b", "c", "d", "e")}
    add(conninfo, "a-dup", "icons/a.png")
    monkeypatch.setattr(db_module, "LOOKUP_BATCH", 2)
    statements: list[str] = []
    with Database(conninfo) as db:
        db.check_field(ICON)
        with db.connection() as conn:
            real_execute = conn.execute

            def counting(query: Any, params: Any = None, **kw: Any) -> Any:
                statements.append(str(query))
                return real_execute(query, params, **kw)

            monkeypatch.setattr(conn, "execute", counting)
        found = db.rows_referencing(ICON, ["icons/a.png", "icons/b.png", "icons/c.png", "icons/e.png", "icons/zz.png"])
    assert len(statements) == 3  # 5 values, 2 per query
    assert sorted(found) == ["icons/a.png", "icons/b.png", "icons/c.png", "icons/e.png"]
    assert [r.slug for r in found["icons/a.png"]] == ["a", "a-dup"]
    assert found["icons/e.png"] == [Row(ids["e"], "e", "icons/e.png", None)]


def test_rows_by_slug_and_find_owner(conninfo: str) -> None:
    a = add(conninfo, "nytimes", "icons/nytimes_icon_v2.png")
    b = add(conninfo, "bbc", None)
    with Database(conninfo) as db:
        assert db.rows_by_slug(ICON, ["nytimes", "bbc", "nope"]) == {
            "nytimes": Row(a, "nytimes", "icons/nytimes_icon_v2.png"),
            "bbc": Row(b, "bbc", None),
        }
        assert find_owner(db, ICON, "icons/nytimes_icon_v2.png", "bbc").id == a  # type: ignore[union-attr]  # reference first
        assert find_owner(db, ICON, "icons/bbc-favicon.ico", "bbc").id == b  # type: ignore[union-attr]  # then by slug
        assert find_owner(db, ICON, "icons/x.png", "x") is None


def test_tenant_scoped_reads(conninfo: str) -> None:
    run(
        conninfo,
        "INSERT INTO tenants_tenantpublication (tenant_id, slug, icon) VALUES (1, 'nyt', 'icons/a.png'), "
        "(2, 'nyt', 'icons/a.png')",
    )
    with Database(conninfo) as db:
        assert db.rows_by_slug(TENANT_ICON, ["nyt"], tenant="2")["nyt"].tenant == "2"
        assert [r.tenant for r in db.rows_referencing(TENANT_ICON, ["icons/a.png"])["icons/a.png"]] == ["1", "2"]
        owner = find_owner(db, TENANT_ICON, "icons/a.png", "nyt", tenant="2")
        assert owner is not None and owner.tenant == "2"


def test_iter_rows_pages_by_id_and_honours_the_range(conninfo: str) -> None:
    ids = [add(conninfo, f"s{i}", f"icons/s{i}.png") for i in range(10)]
    with Database(conninfo) as db:
        rows = db.iter_rows(ICON, batch_size=3)
        assert next(rows).id == ids[0]
        add(conninfo, "late", None)  # pages are separate queries: a row committed meanwhile shows up in a later page
        assert [r.id for r in rows] == [*ids[1:], ids[-1] + 1]
        assert [r.id for r in db.iter_rows(ICON, batch_size=2, start_id=ids[3], end_id=ids[7])] == ids[3:7]
        assert list(db.iter_rows(ICON, batch_size=5, start_id=10_000)) == []


def _s3_order(keys: list[str]) -> list[str]:
    """The order S3 lists keys in: "List results are always returned in UTF-8 binary order" (Amazon S3 API
    Reference, ListObjectsV2)."""
    return sorted(keys, key=lambda k: k.encode("utf-8"))


def test_key_ranges_cut_the_rows_in_the_order_s3_lists_their_keys(conninfo: str) -> None:
    # ids shuffled against the keys (the rows a site adds over the years), and names a locale-aware collation would
    # sort otherwise than S3 does: capitals before lower case, "é" after "z", a space and a digit first
    names = [f"icons/{p}{i:03}.png" for i in range(40) for p in ("a", "B", "é", "z ", "0")]
    random_order = sorted(names, key=lambda n: hash((n, 7)))
    ids = {name: add(conninfo, f"s{i}", name) for i, name in enumerate(random_order)}
    for i in range(30):  # thirty rows sharing one file: a range may split inside them
        ids[f"dup{i}"] = add(conninfo, f"dup{i}", "icons/shared.png")
    add(conninfo, "empty", "")
    add(conninfo, "null", None)
    with Database(conninfo) as db:
        ranges = db.key_ranges(ICON, 16)
        seen = [row for start, end in ranges for row in db.rows_in_key_range(ICON, start, end)]
    assert len(ranges) == -(-230 // 16)  # every 16th row starts a range: ceil(230 / 16)
    assert ranges[0][0] is None and ranges[-1][1] is None  # open at both ends: rows added later are read too
    assert [r.value for r in seen] == _s3_order([*names, *["icons/shared.png"] * 30])  # each once, in S3's order
    assert sorted(r.id for r in seen) == sorted(ids.values())  # no empty file, no row twice, none left out
    shared = [r.id for r in seen if r.value == "icons/shared.png"]
    assert shared == sorted(shared)  # the id breaks the ties
    assert any(start is not None and start[0] == "icons/shared.png" for start, _ in ranges)  # split inside them


def test_key_ranges_of_a_tenant_field_keep_each_tenant_together(conninfo: str) -> None:
    for i, (tenant, icon) in enumerate([(2, "icons/b.png"), (1, "icons/c.png"), (2, "icons/a.png"), (1, "icons/a.png")]):
        run(conninfo, "INSERT INTO tenants_tenantpublication (tenant_id, slug, icon) VALUES (%s, %s, %s)", tenant, f"t{i}", icon)
    with Database(conninfo) as db:
        ranges = db.key_ranges(TENANT_ICON, 2)
        seen = [(r.tenant, r.value) for start, end in ranges for r in db.rows_in_key_range(TENANT_ICON, start, end)]
    assert len(ranges) == 2
    assert seen == [("1", "icons/a.png"), ("1", "icons/c.png"), ("2", "icons/a.png"), ("2", "icons/b.png")]
    run(conninfo, db_module.key_order_index(TENANT_ICON, "public").as_string(None))  # the tenant's expression too
    with Database(conninfo) as db:
        assert db.key_order_index_in_use(TENANT_ICON) == "mediacanon_tenants_tenantpublication_icon_key_order"


def test_the_key_order_index_is_what_the_planner_reads_through(conninfo: str) -> None:
    add(conninfo, "a", "icons/a.png")
    with Database(conninfo) as db:
        assert db.key_order_index_in_use(ICON) is None  # the primary key and slug indexes do not serve the order
        ddl = db_module.key_order_index(ICON, "public").as_string(None)
        assert ddl.startswith("CREATE INDEX CONCURRENTLY IF NOT EXISTS ")
        run(conninfo, ddl)  # autocommit: CONCURRENTLY cannot run inside a transaction block
        assert db.key_order_index_in_use(ICON) == "mediacanon_archive_publicationsource_icon_key_order"
        run(conninfo, ddl)  # IF NOT EXISTS: applying it twice is harmless
        # and a range's read is an index range scan through it
        query, params = db._key_range_query(ICON, ["icons/a.png", 0], ["icons/b.png", 0])
        with psycopg.connect(conninfo, autocommit=True) as conn, conn.transaction():
            conn.execute("SET LOCAL enable_seqscan = off")
            plan = conn.execute(sql.SQL("EXPLAIN (FORMAT JSON) ") + query, params).fetchone()
        assert plan is not None and "Index Cond" in str(plan[0])


# -- swap ------------------------------------------------------------------------------------------------------------


def test_swap_changes_only_rows_still_holding_the_old_value(conninfo: str) -> None:
    a = add(conninfo, "a", "icons/a_icon.png")
    b = add(conninfo, "b", "icons/b_icon.png")
    c = add(conninfo, "c", "icons/c_icon.png")
    run(conninfo, "UPDATE archive_publicationsource SET icon = 'icons/b_new.png' WHERE id = %s", b)  # edited in Django meanwhile

    with Database(conninfo) as db:
        changed = db.swap(
            ICON,
            [
                Swap(a, "icons/a_icon.png", "icons/a.png"),
                Swap(b, "icons/b_icon.png", "icons/b.png"),
                Swap(c, "icons/c_icon.png", "icons/c.png"),
                Swap(999, "icons/x.png", "icons/y.png"),
            ],
        )

    assert sorted(changed) == [a, c]
    assert icons(conninfo) == {"a": "icons/a.png", "b": "icons/b_new.png", "c": "icons/c.png"}


def test_swap_of_an_empty_column_matches_null_and_empty_string(conninfo: str) -> None:
    null, empty, filled = add(conninfo, "n", None), add(conninfo, "e", ""), add(conninfo, "f", "icons/f.png")
    with Database(conninfo) as db:
        changed = db.swap(
            ICON, [Swap(null, None, "icons/n.png"), Swap(empty, "", "icons/e.png"), Swap(filled, None, "icons/f2.png")]
        )
    assert sorted(changed) == [null, empty]
    assert icons(conninfo) == {"n": "icons/n.png", "e": "icons/e.png", "f": "icons/f.png"}


def test_swap_refuses_a_value_longer_than_the_column(conninfo: str) -> None:
    a = add(conninfo, "a", "icons/a.png")
    too_long = "icons/" + "x" * 60 + ".png"  # icon is varchar(60)
    with Database(conninfo) as db, pytest.raises(PermanentError, match="max_length 60"):
        db.swap(ICON, [Swap(a, "icons/a.png", "icons/ok.png"), Swap(a, "icons/a.png", too_long)])
    assert icons(conninfo) == {"a": "icons/a.png"}


def test_swap_in_the_callers_transaction_rolls_back_with_it(conninfo: str) -> None:
    a = add(conninfo, "a", "icons/a_icon.png")
    with Database(conninfo) as db:
        with pytest.raises(ZeroDivisionError), db.connection() as conn, conn.transaction():
            assert db.swap(ICON, [Swap(a, "icons/a_icon.png", "icons/a.png")], conn=conn) == [a]
            _ = 1 / 0  # the caller fails before its commit
        assert icons(conninfo) == {"a": "icons/a_icon.png"}
        assert db.swap(ICON, []) == []


def test_swap_is_all_or_nothing(conninfo: str) -> None:
    a, b = add(conninfo, "a", "icons/a_icon.png"), add(conninfo, "b", "icons/b_icon.png")
    run(conninfo, "ALTER TABLE archive_publicationsource ADD CONSTRAINT no_bad CHECK (icon <> 'icons/bad.png')")
    with Database(conninfo) as db, pytest.raises(PermanentError) as info:
        db.swap(ICON, [Swap(a, "icons/a_icon.png", "icons/a.png"), Swap(b, "icons/b_icon.png", "icons/bad.png")])
    assert isinstance(info.value.__cause__, pg_errors.CheckViolation)
    assert icons(conninfo) == {"a": "icons/a_icon.png", "b": "icons/b_icon.png"}


def test_swap_is_set_based_one_statement_per_batch(conninfo: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(db_module, "SWAP_BATCH", 3)
    ids = [add(conninfo, f"s{i}", f"icons/s{i}_icon.png") for i in range(7)]
    run(conninfo, "UPDATE archive_publicationsource SET icon = 'icons/edited.png' WHERE slug = 's4'")  # edited since
    statements: list[Any] = []
    real = psycopg.Cursor.executemany

    def executemany(cur: psycopg.Cursor[Any], query: Any, params: Any, **kwargs: Any) -> None:
        params = list(params)
        statements.extend(params)
        real(cur, query, params, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "executemany", executemany)
    with Database(conninfo) as db:
        changed = db.swap(ICON, [Swap(row, f"icons/s{i}_icon.png", f"icons/s{i}.png") for i, row in enumerate(ids)])

    assert len(statements) == 3  # 7 rows, at most 3 per statement, all in one transaction
    assert changed == [row for i, row in enumerate(ids) if i != 4]  # in the order given; the edited row kept
    assert icons(conninfo) == {f"s{i}": "icons/edited.png" if i == 4 else f"icons/s{i}.png" for i in range(7)}


def test_swap_of_one_row_twice_applies_in_order(conninfo: str) -> None:
    a, b = add(conninfo, "a", "icons/a_icon.png"), add(conninfo, "b", "icons/b_icon.png")
    with Database(conninfo) as db:
        changed = db.swap(
            ICON,
            [
                Swap(a, "icons/a_icon.png", "icons/a1.png"),
                Swap(b, "icons/b_icon.png", "icons/b.png"),
                Swap(a, "icons/a1.png", "icons/a2.png"),  # holds what the first swap wrote: changes too
                Swap(a, "icons/a_icon.png", "icons/a3.png"),  # no longer holds this: left alone
            ],
        )
        positions = db.swap_positions(ICON, [Swap(b, "icons/nope.png", "icons/x.png"), Swap(b, "icons/b.png", "icons/b2.png")])
    assert changed == [a, b, a]
    assert positions == [1]
    assert icons(conninfo) == {"a": "icons/a2.png", "b": "icons/b2.png"}


def test_swap_empties_a_column_and_leaves_rows_that_moved_on(conninfo: str) -> None:
    a, b = add(conninfo, "a", "icons/a.png"), add(conninfo, "b", "icons/b.png")
    run(conninfo, "UPDATE archive_publicationsource SET icon = 'icons/b_new.png' WHERE id = %s", b)
    with Database(conninfo) as db:
        assert db.swap(ICON, [Swap(a, "icons/a.png", None), Swap(b, "icons/b.png", None)]) == [a]
    assert icons(conninfo) == {"a": None, "b": "icons/b_new.png"}


@pytest.mark.parametrize(
    ("id_type", "ids"),
    [
        ("integer", [1, 2, 3]),
        ("bigint", [2**40, 2**40 + 1, 2**40 + 2]),
        ("smallint", [1, 2, 3]),
        ("uuid", [uuid.UUID(int=1), uuid.UUID(int=2), uuid.UUID(int=3)]),
        ("text", ["pub-1", "pub 2", "pub'3"]),
        ("varchar(20)", ["a", "b", "c"]),
        ("char(6)", ["aaaaaa", "bbbbbb", "cccccc"]),  # 'character' alone would be char(1): the cast must not truncate
        ("numeric(12, 0)", [Decimal(10), Decimal(20), Decimal(30)]),
        ("pk_domain", [7, 8, 9]),
    ],
)
def test_swap_by_ids_of_the_tables_own_type_uses_its_primary_key(
    conninfo: str, monkeypatch: pytest.MonkeyPatch, id_type: str, ids: list[Any]
) -> None:
    run(conninfo, "CREATE DOMAIN pk_domain AS bigint CHECK (VALUE > 0)")
    run(conninfo, f"CREATE TABLE typed (pk {id_type} PRIMARY KEY, slug text, icon varchar(100))")
    for i, pk in enumerate(ids):
        run(conninfo, "INSERT INTO typed (pk, slug, icon) VALUES (%s, %s, %s)", pk, f"s{i}", f"icons/s{i}_icon.png")
    run(conninfo, "UPDATE typed SET icon = 'icons/edited.png' WHERE slug = 's1'")
    mapping = dataclasses.replace(ICON, table="typed", id_column="pk")
    sent: list[tuple[Any, Any]] = []
    real = psycopg.Cursor.executemany

    def executemany(cur: psycopg.Cursor[Any], query: Any, params: Any, **kwargs: Any) -> None:
        params = list(params)
        sent.append((query, params[0]))
        real(cur, query, params, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "executemany", executemany)
    with Database(conninfo) as db:
        rows = {r.slug: r.id for r in db.iter_rows(mapping)}
        # an id as the database returns it, and as a JSON ledger entry gives it back to rollback (a uuid as a string)
        s2 = str(rows["s2"]) if id_type == "uuid" else rows["s2"]
        changed = db.swap(
            mapping,
            [
                Swap(rows["s0"], "icons/s0_icon.png", "icons/s0.png"),
                Swap(rows["s1"], "icons/s1_icon.png", "icons/s1.png"),  # edited since: kept
                Swap(s2, "icons/s2_icon.png", "icons/s2.png"),
            ],
        )
        [(query, params)] = sent
        with db.connection() as conn, conn.transaction():
            conn.execute("SET LOCAL enable_seqscan = off")
            plan = "\n".join(str(line[0]) for line in conn.execute(sql.SQL("EXPLAIN ") + query, params))
    assert changed == [rows["s0"], s2]  # the ids as the caller named them
    assert dict(run(conninfo, "SELECT slug, icon FROM typed")) == {
        "s0": "icons/s0.png",
        "s1": "icons/edited.png",
        "s2": "icons/s2.png",
    }
    assert "typed_pkey" in plan  # the key compares with its own type: its index serves the statement
    assert "Seq Scan" not in plan


# -- error translation -----------------------------------------------------------------------------------------------


def test_a_table_dropped_after_the_check_is_permanent(conninfo: str) -> None:
    with Database(conninfo) as db:
        db.check_field(ICON)
        run(conninfo, "DROP TABLE archive_publicationsource")
        with pytest.raises(PermanentError) as info:
            db.rows_by_slug(ICON, ["a"])
    assert isinstance(info.value.__cause__, pg_errors.UndefinedTable)
    assert not isinstance(info.value, RetryableError)


def test_an_unreachable_server_is_retryable() -> None:
    with (
        Database(f"host=127.0.0.1 port={free_port()} dbname=x user=x connect_timeout=2") as db,
        pytest.raises(RetryableError) as info,
    ):
        db.check_field(ICON)
    assert isinstance(info.value.__cause__, psycopg.OperationalError)


def test_a_connection_killed_by_the_server_is_retryable_and_the_next_call_reconnects(conninfo: str) -> None:
    add(conninfo, "a", "icons/a.png")
    with Database(conninfo) as db:
        with db.connection() as conn:
            pid = conn.info.backend_pid
        run(conninfo, "SELECT pg_terminate_backend(%s)", pid)
        with pytest.raises(RetryableError):
            db.rows_by_slug(ICON, ["a"])
        assert db.rows_by_slug(ICON, ["a"])["a"].value == "icons/a.png"


def test_a_statement_timeout_is_retryable(conninfo: str) -> None:
    with Database(conninfo) as db, pytest.raises(RetryableError) as info, db.connection() as conn:
        conn.execute("SET statement_timeout = 50")
        conn.execute("SELECT pg_sleep(5)")
    assert isinstance(info.value.__cause__, pg_errors.QueryCanceled)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (pg_errors.SerializationFailure, RetryableError),
        (pg_errors.DeadlockDetected, RetryableError),
        (pg_errors.LockNotAvailable, RetryableError),
        (pg_errors.QueryCanceled, RetryableError),
        (pg_errors.TooManyConnections, RetryableError),
        (pg_errors.AdminShutdown, RetryableError),
        (psycopg.OperationalError, RetryableError),  # no SQLSTATE: connection refused or lost
        (pg_errors.UndefinedTable, PermanentError),
        (pg_errors.UndefinedColumn, PermanentError),
        (pg_errors.InsufficientPrivilege, PermanentError),
        (pg_errors.StringDataRightTruncation, PermanentError),
        (pg_errors.UniqueViolation, PermanentError),
        (pg_errors.InvalidPassword, PermanentError),
        (pg_errors.InvalidCatalogName, PermanentError),
    ],
)
def test_translation_by_sqlstate_class_and_type(error: type[psycopg.Error], expected: type[Exception]) -> None:
    translated = translate_error(error("the message is never parsed"), "query")
    assert type(translated) is expected


def test_a_pool_or_a_connection_can_be_injected(conninfo: str) -> None:
    from psycopg_pool import ConnectionPool

    a = add(conninfo, "a", "icons/a_icon.png")
    with ConnectionPool(conninfo, min_size=1, max_size=1, open=True) as pool:
        db = Database(pool)
        # max_size=1: swap inside the caller's transaction must not ask the pool for a second connection
        with db.connection() as conn, conn.transaction():
            assert db.swap(ICON, [Swap(a, "icons/a_icon.png", "icons/a.png")], conn=conn) == [a]
        assert db.rows_by_slug(ICON, ["a"])["a"].value == "icons/a.png"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        db = Database(conn)
        assert db.swap(ICON, [Swap(a, "icons/a.png", "icons/a2.png")]) == [a]
        db.close()  # the caller's connection stays open
        assert not conn.closed
    assert icons(conninfo) == {"a": "icons/a2.png"}
