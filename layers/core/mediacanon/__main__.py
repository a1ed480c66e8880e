"""`python -m mediacanon`: the `mediacanon` command."""

from mediacanon.cli import main

main()
