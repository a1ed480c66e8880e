"""The library's import graph: no circle, imports pointing only down the layers, and the product apart from its
local emulator. Read from the source (ast), so a lazy import inside a function counts as much as one at the top;
imports under `if TYPE_CHECKING:` do not (they never run).

    core      naming, the media map, errors: pure
    adapters  s3, db, ledger, grants, cdn: each takes its client
    rules     copies, owners, plan, steps, the backfill, checks, orphans, rollback
    runners   wiring, the live glue, sfnremote, upload
    local     the laptop emulator: moto, embedded PostgreSQL, the local Step Functions and topology
    cli       the commands
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "layers" / "core"
PACKAGE = ROOT / "mediacanon"

TIERS = (
    ("core", ("mediacanon.core",)),
    ("adapters", ("mediacanon.adapters",)),
    (
        "rules",
        (
            "mediacanon.copies",
            "mediacanon.owners",
            "mediacanon.plan",
            "mediacanon.steps",
            "mediacanon.backfill",
            "mediacanon.checks",
            "mediacanon.orphans",
            "mediacanon.rollback",
        ),
    ),
    ("runners", ("mediacanon.wiring", "mediacanon.live", "mediacanon.sfnremote", "mediacanon.upload")),
    ("django", ("mediacanon.django",)),  # the Django side: the project's own process; the CLI's `init` uses it
    ("local", ("mediacanon.local",)),
    ("cli", ("mediacanon.cli", "mediacanon.__main__")),
)
# not the product: what only a laptop runs (the CLI may start the emulator; nothing below it may)
EMULATOR = "mediacanon.local"
LAPTOP_ONLY = ("mediacanon.local", "mediacanon.cli", "mediacanon.__main__")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported(name: str, path: Path) -> set[str]:
    """The mediacanon modules `name` imports at run time (a name imported from a package: the module, if it is one)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            for alias in node.names:
                full = f"{module}.{alias.name}"
                found.add(full if full in MODULES else module)
        for inner in ast.iter_child_nodes(node):
            visit(inner)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return {m for m in found if m.startswith("mediacanon") and m != name and m != "mediacanon"}


GRAPH = {name: _imported(name, path) for name, path in MODULES.items()}


def _tier(module: str) -> int:
    for index, (_, prefixes) in enumerate(TIERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return index
    raise AssertionError(f"{module} is in no tier of this test: add it to TIERS where it belongs")


def test_the_graph_was_read() -> None:
    # the reader sees what a look at the source shows: the steps use the owner lookup, the CLI the emulator
    assert "mediacanon.owners" in GRAPH["mediacanon.steps"]
    assert "mediacanon.local.sfnlocal" in GRAPH["mediacanon.cli.backfill"]
    assert len(MODULES) > 40


def test_every_module_has_a_tier() -> None:
    for module in MODULES:
        if module != "mediacanon":
            _tier(module)


def _circle(graph: dict[str, set[str]]) -> list[str] | None:
    """The first import circle in `graph` (depth first, in name order), or None."""
    done: set[str] = set()

    def walk(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return [*path[path.index(module) :], module]
        if module in done:
            return None
        for imported in sorted(graph.get(module, ())):
            if (found := walk(imported, [*path, module])) is not None:
                return found
        done.add(module)
        return None

    for module in sorted(graph):
        if (found := walk(module, [])) is not None:
            return found
    return None


def test_the_circle_finder_finds_one() -> None:
    assert _circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _circle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_circle() -> None:
    assert _circle(GRAPH) is None


def test_imports_point_down_the_tiers() -> None:
    upward = [
        f"{module} ({TIERS[_tier(module)][0]}) imports {imported} ({TIERS[_tier(imported)][0]})"
        for module, imports in sorted(GRAPH.items())
        if module != "mediacanon"
        for imported in sorted(imports)
        if _tier(imported) > _tier(module)
    ]
    assert upward == []


def test_the_product_never_imports_the_emulator() -> None:
    product = [m for m in GRAPH if not any(m == p or m.startswith(p + ".") for p in LAPTOP_ONLY)]
    assert "mediacanon.steps" in product and "mediacanon.wiring" in product
    offending = [
        f"{module} imports {imported}"
        for module in sorted(product)
        for imported in sorted(GRAPH[module])
        if imported == EMULATOR or imported.startswith(EMULATOR + ".")
    ]
    assert offending == []


def test_the_core_is_pure() -> None:
    # naming, the media map and errors import nothing of the project but each other, and no AWS or database driver
    for module in (m for m in MODULES if m not in ("mediacanon", "mediacanon.core") and _tier(m) == 0):
        tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
        drivers = {
            alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
        } | {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        assert drivers.isdisjoint({"boto3", "botocore", "psycopg", "psycopg_pool", "moto"}), module
