"""The old home of `criu-model import`, now criu_model/cli/import_.py.

Kept as a re-export because tests/formats/test_cli_import.py (another room's
test) imports it from here; new code imports criu_model.cli.import_.
"""

from criu_model.cli.import_ import add_parser, run

__all__ = ["add_parser", "run"]
