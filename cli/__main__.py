"""`python -m cli`: the `retrain` command."""

from cli.app import app

app()
