"""`mediacanon init` on two real Django projects, each in a process of its own (Django's settings are process-global):
the acceptance site (tests/acceptance/django_site, its models the sample archive's) and tests/data/django_other, shaped
otherwise (custom db_table, db_column, a callable and a strftime upload_to, two S3 buckets, a FileSystemStorage field).
The written maps pass `mediacanon check-config`, which lists their gaps."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from mediacanon.core import mediamap

REPO = Path(__file__).resolve().parents[2]
MEDIACANON = Path(sys.executable).with_name("mediacanon")
OTHER = REPO / "tests" / "data" / "django_other"
SITE_ENV = {
    "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/never",  # init never connects
    "AWS_ENDPOINT_URL": "http://127.0.0.1:1",
    "MEDIASITE_PRIMARY_BUCKET": "site-media",
    "MEDIASITE_CDN_BUCKET": "site-cdn",
    "MEDIASITE_CDN_URL": "https://cdn.example.com/assets",
}
SITE_ARGS = (
    "--django-settings",
    "mediasite.settings",
    "--pythonpath",
    str(REPO / "sample"),
    "--pythonpath",
    str(REPO / "tests" / "acceptance" / "django_site"),
)
OTHER_ARGS = ("--django-settings", "otherproject.settings", "--pythonpath", str(OTHER))


def run(args: list[str] | tuple[str, ...], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "MEDIACANON_CONFIG")}
    full_env.update(env or {})
    return subprocess.run(
        [str(MEDIACANON), *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=120, check=False
    )


def entry(text: str, name: str) -> str:
    """The lines of one field's entry, comments included (commented-out entries too)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.lstrip("# ").startswith(f"- name: {name}"))
    while start > 0 and lines[start - 1].strip().startswith("#"):
        start -= 1
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    return "\n".join(lines[start:end])


def uncomment(block: str) -> dict[str, Any]:
    """A commented-out entry, read as the YAML it would be once uncommented."""
    body = [line[4:] for line in block.splitlines() if line.startswith("  # ") and line[4:].startswith(("- ", "  "))]
    data = yaml.safe_load("\n".join(body))
    assert isinstance(data, list) and len(data) == 1, block
    item = data[0]
    assert isinstance(item, dict)
    return item


class Written:
    def __init__(self, path: Path, result: subprocess.CompletedProcess[str]) -> None:
        self.path = path
        self.result = result
        self.text = path.read_text(encoding="utf-8")
        self.map = mediamap.load(path)

    def field(self, name: str) -> mediamap.FieldMapping:
        return self.map.field(name)


@pytest.fixture(scope="module")
def site_map(tmp_path_factory: pytest.TempPathFactory) -> Written:
    out = tmp_path_factory.mktemp("init-site") / "mediamap.yaml"
    result = run(["init", *SITE_ARGS, "--output", str(out)], cwd=out.parent, env=SITE_ENV)
    assert result.returncode == 0, result.stderr
    return Written(out, result)


@pytest.fixture(scope="module")
def other_map(tmp_path_factory: pytest.TempPathFactory) -> Written:
    cwd = tmp_path_factory.mktemp("init-other")
    result = run(["init", *OTHER_ARGS], cwd=cwd)  # --output defaults to mediamap.yaml
    assert result.returncode == 0, result.stderr
    return Written(cwd / "mediamap.yaml", result)


def test_site_map_agrees_with_the_hand_written_sample(site_map: Written) -> None:
    sample = mediamap.load(REPO / "sample" / "mediamap.yaml")
    for name in ("archive.PublicationSource.icon", "archive.PublicationSource.masthead"):
        written, expected = site_map.field(name), sample.field(name)
        assert (written.table, written.column, written.upload_to, written.max_length) == (
            expected.table,
            expected.column,
            expected.upload_to,
            expected.max_length,
        )
        assert written.slug_column == "slug"
        assert written.canonical == expected.canonical
        assert written.location == ""
        assert "*.png" in written.include  # an ImageField
    assert [f.name for f in site_map.map.fields] == [
        "archive.PublicationSource.masthead",
        "archive.PublicationSource.icon",
        "tenants.TenantPublication.icon",
    ]


def test_site_buckets_come_from_storages(site_map: Written) -> None:
    assert site_map.map.buckets.primary == "site-media"  # STORAGES['default'] OPTIONS bucket_name
    assert "fill-in" in site_map.map.buckets.cdn
    assert "custom_domain): cdn.example.com/assets" in site_map.text
    assert "storage: STORAGES['default'] (storages.backends.s3.S3Storage)" in entry(
        site_map.text, "archive.PublicationSource.icon"
    )
    assert "3 file field(s), 3 mapped, 2 gap(s)" in site_map.result.stderr


def test_site_tenant_model_without_unique_slug_is_a_gap(site_map: Written) -> None:
    tenant = site_map.field("tenants.TenantPublication.icon")
    assert tenant.slug_column == tenant.id_column == "id"
    block = entry(site_map.text, "tenants.TenantPublication.icon")
    assert "GAP: no unique SlugField on tenants.TenantPublication" in block
    assert "unique only together with tenant" in block  # its UniqueConstraint(tenant, slug)


def test_check_config_accepts_the_site_map_and_lists_its_gaps(site_map: Written) -> None:
    result = run(["check-config", "--config", str(site_map.path)], cwd=site_map.path.parent)
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout
    assert "2 gap(s) to fill in" in result.stdout
    assert (
        "gap: field tenants.TenantPublication.icon: no unique SlugField on the model: canonical keys are named by row id (id) "
        "(fix: add a unique SlugField and set slug_column)"
    ) in result.stdout
    assert "gap: buckets.cdn: 'site-media-cdn-fill-in' is a placeholder" in result.stdout


def test_other_tables_columns_and_locations(other_map: Written) -> None:
    avatar = other_map.field("ledger.Customer.avatar")
    assert (avatar.table, avatar.column, avatar.slug_column) == ("crm_customers", "avatar_key", "handle")  # db_table, db_column
    assert (avatar.upload_to, avatar.canonical, avatar.max_length) == ("avatars/", "avatars/{slug}{ext}", 200)
    assert avatar.location == "media/"  # STORAGES['default'] OPTIONS location 'media'
    invoice = other_map.field("ledger.Invoice.scan")
    assert (invoice.table, invoice.id_column, invoice.slug_column) == ("ledger_invoice", "invoice_no", "slug")
    assert invoice.location == "archive/"  # a storage= instance on the same bucket
    assert invoice.include == ("*.pdf", "*.tiff")  # its FileExtensionValidator
    assert other_map.map.buckets.primary == "ledger-media"  # the bucket most fields write to
    assert "custom_domain): media.ledger.example" in other_map.text


def test_other_callable_upload_to_is_a_placeholder_never_called(other_map: Written) -> None:
    scan = other_map.field("ledger.Contract.scan")
    assert (scan.table, scan.column, scan.max_length) == ("crm_contracts", "scan", 255)
    assert scan.upload_to.startswith("FILL-IN") and scan.canonical == scan.upload_to + "{slug}{ext}"
    assert scan.slug_column == "id"  # Contract has no SlugField
    block = entry(other_map.text, "ledger.Contract.scan")
    assert "the callable ledger.models.contract_path" in block  # it raises if called: the map was written without it


def test_other_field_on_another_bucket_is_left_out_with_its_storage(other_map: Written) -> None:
    assert "ledger.Contract.signed_copy" not in [f.name for f in other_map.map.fields]
    block = entry(other_map.text, "ledger.Contract.signed_copy")
    assert "writes to bucket ledger-documents, not the primary ledger-media" in block
    assert "ledger.storage.documents_storage() -> STORAGES['documents']" in block
    assert "strftime pattern" in block
    signed = uncomment(block)
    assert signed["location"] == "private/"
    assert (signed["upload_to"], signed["canonical"]) == ("signed/", "signed/{slug}{ext}")  # 'signed/%Y/%m/'
    assert "GAP: other fields write to ledger-documents" in other_map.text


def test_other_shared_prefix_and_local_storage(other_map: Written) -> None:
    pdf, receipt = other_map.field("ledger.Invoice.pdf"), other_map.field("ledger.Invoice.receipt")
    assert (pdf.location, pdf.upload_to) == (receipt.location, receipt.upload_to) == ("archive/", "invoices/")
    assert pdf.include != receipt.include and all("FILL-IN" in p for p in (*pdf.include, *receipt.include))
    note = entry(other_map.text, "ledger.Note.attachment")
    assert "FileSystemStorage" in note and "GAP: not an S3 storage" in note


def test_check_config_lists_the_other_maps_gaps(other_map: Written) -> None:
    result = run(["check-config", "--config", str(other_map.path)], cwd=other_map.path.parent)
    assert result.returncode == 0, result.stderr
    gaps = [line.strip() for line in result.stdout.splitlines() if line.strip().startswith("gap: ")]
    assert len(gaps) == 5, result.stdout
    assert any(g.startswith("gap: field ledger.Contract.scan: no unique SlugField on the model") for g in gaps)
    assert any(
        g.startswith("gap: field ledger.Contract.scan: upload_to 'FILL-IN-ledger.Contract.scan/' is a placeholder") for g in gaps
    )
    assert sum("include holds a placeholder" in g for g in gaps) == 2
    assert "5 gap(s)" in other_map.result.stderr


def test_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    out = tmp_path / "mediamap.yaml"
    out.write_text("mine\n", encoding="utf-8")
    result = run(["init", *OTHER_ARGS, "--output", str(out)], cwd=tmp_path)
    assert result.returncode == 2
    assert f"error: {out}: already exists, not overwritten (fix: pass --force" in result.stderr
    assert out.read_text(encoding="utf-8") == "mine\n"
    forced = run(["init", *OTHER_ARGS, "--output", str(out), "--force"], cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert mediamap.load(out).buckets.primary == "ledger-media"


def test_stdout_output(tmp_path: Path) -> None:
    result = run(["init", *OTHER_ARGS, "--output", "-"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert mediamap.parse(yaml.safe_load(result.stdout)).field("ledger.Customer.avatar").column == "avatar_key"
    assert not (tmp_path / "mediamap.yaml").exists()


def test_settings_that_cannot_be_imported(tmp_path: Path) -> None:
    result = run(["init", "--django-settings", "otherproject.settings"], cwd=tmp_path)  # no --pythonpath
    assert result.returncode == 2
    assert "error: --django-settings otherproject.settings: cannot import otherproject" in result.stderr
    assert "--pythonpath DIR" in result.stderr
    assert "Traceback" not in result.stderr
    failing = run(["init", *SITE_ARGS], cwd=tmp_path)  # the site's settings need their environment variables
    assert failing.returncode == 2
    assert "Django setup failed: KeyError: 'DATABASE_URL'" in failing.stderr
    assert not (tmp_path / "mediamap.yaml").exists()


def test_without_django_the_cli_works_and_init_says_what_to_install(tmp_path: Path) -> None:
    block_django = "import sys; sys.modules['django'] = None; from mediacanon.cli import main; main()"
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    base = [sys.executable, "-c", block_django]
    check = subprocess.run(
        [*base, "check-config", "--config", str(REPO / "sample" / "mediamap.yaml")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stderr
    init = subprocess.run([*base, "init", *OTHER_ARGS], cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
    assert init.returncode == 2
    assert "pip install 'mediacanon[django]'" in init.stderr
