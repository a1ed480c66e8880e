"""Output: the consoles, one-line messages, `error: ...` and the exit codes. Formatting only."""

from __future__ import annotations

import sys
from typing import NoReturn

from rich.console import Console
from rich.text import Text

# User data (keys, paths, error texts) is printed verbatim: no markup (`[draft]` is not a tag), no emoji codes
# (`:smile:` stays as typed), no highlighting. Styles come from Text objects only.
# Not a terminal (CI logs, pipes): wide enough that keys are not folded mid-name.
console = Console(width=None if sys.stdout.isatty() else 200, markup=False, emoji=False, highlight=False)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 200, markup=False, emoji=False, highlight=False)

# Exit codes: 0 done; 1 the run failed or found what it checks for broken; 2 the command line is wrong (an option's
# value, an unknown name, a missing folder or manifest: nothing was started) or explain refused the key;
# 130 interrupted.
EXIT_FAILED = 1
EXIT_REFUSED = 2
EXIT_USAGE = 2


def _say(text: str | Text, *, err: bool = False) -> None:
    """One line of output, verbatim: never read as markup or emoji codes, never folded."""
    (err_console if err else console).print(text, soft_wrap=True)


def _fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    _say(Text.assemble(("error:", "red"), " ", message), err=True)
    sys.exit(code)
