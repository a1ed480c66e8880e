"""The core layer ships the product only: layers/core/Makefile's layer-code, as `sam build` runs it, holds no module
of the local emulator or the CLI, and nothing in it imports moto, pgserver or werkzeug; what its modules import at
the top level is the standard library, mediacanon's own shipped modules, or a package the layer pins."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EMULATION = ("moto", "pgserver", "werkzeug", "django", "storages")  # and the Django side: the layer never imports Django
NOT_SHIPPED = ("mediacanon.local", "mediacanon.cli", "mediacanon.__main__", "mediacanon.upload", "mediacanon.django")
# top-level import names of layers/core/requirements.txt's packages and what they bring
PINNED = {"boto3", "botocore", "s3transfer", "aws_lambda_powertools", "aws_xray_sdk", "psycopg", "psycopg_pool", "yaml"}


@pytest.fixture(scope="module")
def layer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("layer")
    subprocess.run(["make", "-s", "-C", str(ROOT / "layers/core"), "layer-code", f"ARTIFACTS_DIR={out}"], check=True)
    return out / "python"


def modules(layer: Path) -> dict[str, Path]:
    found = {}
    for path in sorted((layer / "mediacanon").rglob("*.py")):
        parts = path.relative_to(layer).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(path: Path, *, top_level_only: bool) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))  # top level: `if TYPE_CHECKING:` imports left out
    names: list[str] = []
    for node in nodes:
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    return names


def test_the_layer_holds_the_product_and_no_emulator_or_cli(layer: Path) -> None:
    shipped = modules(layer)
    assert {
        "mediacanon.steps",
        "mediacanon.live",
        "mediacanon.backfill",
        "mediacanon.core.naming",
        "mediacanon.adapters.s3",
    } <= set(shipped)
    assert not [m for m in shipped if m.startswith(NOT_SHIPPED)]


def test_nothing_in_the_layer_imports_the_emulators(layer: Path) -> None:
    bad = {
        module: name
        for module, path in modules(layer).items()
        for name in imports(path, top_level_only=False)
        if name.split(".")[0] in EMULATION or name.startswith(NOT_SHIPPED)
    }
    assert bad == {}


def test_what_the_layer_imports_at_load_time_is_in_the_layer(layer: Path) -> None:
    shipped = modules(layer)
    missing: dict[str, list[str]] = {}
    for module, path in shipped.items():
        for name in imports(path, top_level_only=True):
            top = name.split(".")[0]
            if top == "mediacanon":
                ok = name in shipped or name.rsplit(".", 1)[0] in shipped
            else:
                ok = top in sys.stdlib_module_names or top in PINNED or top == "__future__"
            if not ok:
                missing.setdefault(module, []).append(name)
    assert missing == {}


def test_the_functions_import_only_what_the_layer_ships(layer: Path) -> None:
    shipped = modules(layer)
    for app in sorted((ROOT / "functions").glob("*/app.py")):
        for name in imports(app, top_level_only=True):
            if name.startswith("mediacanon"):
                assert name in shipped or name.rsplit(".", 1)[0] in shipped, (app, name)


def test_the_pins_named_here_are_the_layers_requirements() -> None:
    pinned = {
        re.split(r"[\[=<>]", line)[0].strip().lower()
        for line in (ROOT / "layers/core/requirements.txt").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert pinned == {"aws-lambda-powertools", "psycopg", "psycopg-pool", "pyyaml", "boto3", "botocore", "s3transfer"}
