"""`python -m app.cli`: the `collab-bus` command."""

from app.cli import main

main()
