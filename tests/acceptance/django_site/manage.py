#!/usr/bin/env python
"""Django's command-line utility for the acceptance site (tests/acceptance/test_django_site.py runs it)."""

import os
import sys
from pathlib import Path


def main() -> None:
    # the site reuses the sample project's apps (archive_site.archive, archive_site.tenants) rather than a copy
    # of them: their models and migrations are the ones mediacanon's sample media map describes
    sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "sample"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mediasite.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
