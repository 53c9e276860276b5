"""``python -m apimsync`` runs the command line."""

from apimsync.cli import main

main(prog_name="apimsync")
