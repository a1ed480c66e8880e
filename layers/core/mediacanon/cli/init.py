"""`mediacanon init`: write the media map from a Django project's models (mediacanon.django.introspect).

Django is imported only here, inside the command: the rest of the CLI works without it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from mediacanon.cli.output import EXIT_USAGE, _fail, _say
from mediacanon.core import gaps, mediamap
from mediacanon.core.errors import ConfigError, ConfigErrors

DJANGO_MISSING = "Django is not installed in this environment (fix: pip install 'mediacanon[django]')"


@click.command("init")
@click.option(
    "--django-settings", "settings_module", required=True, metavar="MODULE", help="the settings module, e.g. mysite.settings"
)
@click.option(
    "--pythonpath",
    multiple=True,
    type=click.Path(exists=True, file_okay=False),
    help="a directory to import the project from (repeatable; default: the current directory)",
)
@click.option("--output", "-o", default="mediamap.yaml", show_default=True, help="the file to write ('-': stdout)")
@click.option("--force", is_flag=True, help="overwrite --output if it exists")
def init_command(settings_module: str, pythonpath: tuple[str, ...], output: str, force: bool) -> None:
    """Write the media map of a Django project: one entry per FileField/ImageField, read off its models and its
    django-storages settings, with a comment on each value to fill in (check-config lists them)."""
    target = None if output == "-" else Path(output)
    if target is not None and target.exists() and not force:
        _fail(
            f"{target}: already exists, not overwritten (fix: pass --force to replace it, or --output another file)", EXIT_USAGE
        )
    apps = _setup_django(settings_module, pythonpath)
    from mediacanon.django import introspect

    infos = introspect.walk(apps)
    if not infos:
        _fail(
            f"{settings_module}: no model of INSTALLED_APPS has a FileField or ImageField: there is no media map to write "
            "(fix: check --django-settings, and that the apps with file fields are installed)",
            EXIT_USAGE,
        )
    text = introspect.render(introspect.build(infos, settings_module))
    if target is None:
        click.echo(text, nl=False)
    else:
        try:
            with target.open("w" if force else "x", encoding="utf-8") as fh:
                fh.write(text)
        except OSError as exc:
            _fail(f"{target}: cannot be written: {exc.strerror or exc} (fix: --output a writable path)")
    where = "stdout" if target is None else str(target)
    _report(text, where, len(infos))


def _report(text: str, where: str, fields: int) -> None:
    """Check what was written, the way check-config will: a line on stderr with the gaps' count."""
    import yaml

    try:
        media_map = mediamap.parse(yaml.safe_load(text), source=where)
    except ConfigError as exc:
        problems = exc.errors if isinstance(exc, ConfigErrors) else [exc]
        for problem in problems:
            _say(f"  {problem}", err=True)
        _fail(f"{where}: written, but not a valid media map ({len(problems)} problem(s), each above with its fix)")
    found = gaps.find_gaps(media_map)
    _say(
        f"wrote {where}: {fields} file field(s), {len(media_map.fields)} mapped, {len(found)} gap(s) to fill in "
        f"(`mediacanon check-config --config {where if where != 'stdout' else 'FILE'}` lists them; "
        "commented entries say why)",
        err=True,
    )


def _setup_django(settings_module: str, pythonpath: tuple[str, ...]) -> object:
    """Import the project and set Django up in this process (a CLI's own: settings are process-global)."""
    try:
        import django
    except ImportError:
        _fail(DJANGO_MISSING, EXIT_USAGE)
    for directory in reversed(pythonpath or (os.getcwd(),)):
        sys.path.insert(0, str(Path(directory).resolve()))
    os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
    try:
        django.setup()
    except ModuleNotFoundError as exc:
        _fail(
            f"--django-settings {settings_module}: cannot import {exc.name or settings_module}: {exc} "
            "(fix: pass --pythonpath DIR, the directory the project's packages are imported from)",
            EXIT_USAGE,
        )
    except Exception as exc:  # the project's settings or apps failed to load (a missing env var, a bad setting)
        _fail(
            f"--django-settings {settings_module}: Django setup failed: {type(exc).__name__}: {exc} "
            "(fix: set what the settings need, e.g. their environment variables, as for manage.py check)",
            EXIT_USAGE,
        )
    from django.apps import apps

    return apps
