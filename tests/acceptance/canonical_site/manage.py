#!/usr/bin/env python
"""Django's command-line utility for the canonical site (tests/acceptance/test_canonical_upload.py and
tests/integration/test_django_checks.py run it): `canonsite.settings` by default, `canonsite.check_settings` for the
acceptance site's settings with the mediacanon app installed."""

import os
import sys
from pathlib import Path


def main() -> None:
    here = Path(__file__).resolve().parent
    repo = here.parents[2]
    # canonsite itself; the acceptance site's settings (mediasite) and the sample's apps (archive_site), which
    # canonsite.check_settings reuses as they are
    sys.path[:0] = [str(here), str(repo / "tests" / "acceptance" / "django_site"), str(repo / "sample")]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "canonsite.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
