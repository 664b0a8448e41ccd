"""`python -m payments.sandbox …`: the same as the `toss-sandbox` command."""

from .cli import main

main(prog_name="toss-sandbox")
