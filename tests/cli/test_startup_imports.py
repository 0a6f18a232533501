"""Start-up of `show` and `--help`: what they load and build (issue 15; not a timing test)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.images.sample import sample_snapshot


def _run_in_process(argv: list[str], after: str) -> list[str]:
    """Output lines of `criu-model ARGV` run in-process, then of the code `after`."""
    script = ("import sys\nfrom criu_model.cli import main\n"
              f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
              f"sys.stdout.flush()\nprint('\\nAFTER')\n{after}")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60)
    lines = out.stdout.splitlines()
    return lines[lines.index("AFTER") + 1:]


def test_show_table_loads_no_emoji_table(tmp_path: Path) -> None:
    from criu_model.images import write

    snap = write(sample_snapshot(), tmp_path / "snap")
    mods = _run_in_process(["show", str(snap), "procs"], "print('\\n'.join(sys.modules))")
    assert "rich.table" in mods  # it did print a table
    assert "rich._emoji_codes" not in mods
    assert "_hashlib" not in mods  # small images are checked without OpenSSL


def test_only_the_running_command_gets_its_full_parser() -> None:
    # Each command's parser (its arguments) is built only when it runs: `--help`
    # lists every command from its help line alone.
    probe = ("import criu_model.cli as c\n"
             "p = c._build_parser()\n"
             "sub = next(a for a in p._actions if isinstance(a, c._LazyCommands))\n"
             "p.parse_args(['check'])\n"
             "for name, sp in sub._name_parser_map.items():\n"
             "    print(name, -1 if sp is None else len(sp._actions))")
    counts = dict(line.split() for line in _run_in_process(["--version"], probe))
    assert sorted(counts) == sorted(["dump", "show", "diff", "plan", "grep", "heat", "thaw",
                                     "import", "check"])
    assert int(counts["check"]) > 1  # built: its own options besides -h
    assert all(n == "-1" for name, n in counts.items() if name != "check")  # no parser
