"""`python -m criu_model` runs the CLI."""

from criu_model.cli import main

raise SystemExit(main())
