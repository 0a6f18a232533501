"""`python -m criu_model` runs the CLI."""

from criu_model.cli import run_and_exit

run_and_exit()
