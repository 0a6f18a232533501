"""Command line: parse arguments, call the library, print one clear line on error.

One module per command (dump, show, diff, plan, grep, heat, thaw, import, check).
Each registers its sub-parser with ``add_parser(subparsers)`` and runs with
``run(args, console)``; a module imports its machinery only inside ``run``, so
``--help`` and usage errors load nothing heavy (tests/cli/test_cli_imports.py).

Exit codes: 0 success, 1 failure (one line on stderr; traceback only with
--debug), 2 usage error (argparse), 130 interrupted. A command may map a
CriuModelError to another status (its module's ``ERROR_EXIT``): diff follows
diff(1), where 1 means "differences".
"""

from __future__ import annotations

import sys

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
_INTERRUPTED_EARLY = "criu-model: interrupted (before anything was done)"

# Ctrl-C while the modules below load is an interruption like any other: one
# line and 130, never a KeyboardInterrupt traceback.
try:
    import argparse
    import errno
    import os
    import signal
    from collections.abc import Sequence
    from types import FrameType, ModuleType
    from typing import TYPE_CHECKING, Any, cast

    from criu_model import __version__
    from criu_model.cli import check, diff, dump, heat, import_, memory, plan, show, thaw
    from criu_model.errors import BadArgument, CriuModelError
except KeyboardInterrupt:
    print(_INTERRUPTED_EARLY, file=sys.stderr)
    raise SystemExit(EXIT_INTERRUPTED) from None

if TYPE_CHECKING:
    from rich.console import Console

# a failed write to the standard output
_OUTPUT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO})

# The order of `criu-model --help`: command name -> its module.
COMMANDS: dict[str, ModuleType] = {
    "dump": dump, "show": show, "diff": diff, "plan": plan, "grep": memory, "heat": heat,
    "thaw": thaw, "import": import_, "check": check,
}


class Terminated(BaseException):
    """SIGTERM, raised like KeyboardInterrupt so every `finally` (thaw, cleanup) runs."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


def _columns() -> int:
    """shutil.get_terminal_size().columns without importing shutil (1.5 ms, with bz2 and lzma)."""
    try:
        columns = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose help formatter gets its width from :func:`_columns`.

    argparse makes a formatter for every add_argument (to check the metavar),
    and HelpFormatter without a width imports shutil for the terminal size.
    """

    def _get_formatter(self) -> argparse.HelpFormatter:
        return self.formatter_class(prog=self.prog, width=_columns() - 2)


class _LazyCommands(argparse._SubParsersAction):
    """COMMAND: every command registered with its help line only, its own parser built
    when it is the one that runs.

    Nine full sub-parsers cost ~1.5 ms of every start-up, nine empty ones still
    ~0.9 ms (argparse looks up translations for each); `--help` needs only the
    help lines, and a command only its own arguments.
    """

    def add_command(self, name: str, help_line: str) -> None:
        """List ``name`` in `--help` with ``help_line``; its parser is made when it runs."""
        self._choices_actions.append(self._ChoicesPseudoAction(name, (), help_line))
        self._name_parser_map[name] = None  # type: ignore[assignment]  # made by __call__

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        name = values[0]
        module = COMMANDS.get(name)
        if module is not None and self._name_parser_map.get(name) is None:
            # the help line goes; the command registers its real parser
            del self._name_parser_map[name]
            self._choices_actions[:] = [a for a in self._choices_actions if a.dest != name]
            module.add_parser(self)
        super().__call__(parser, namespace, values, option_string)


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="criu-model",
        description="Dump, inspect, diff and plan the restore of Linux process trees.",
        epilog="`criu-model COMMAND --help` describes a command's arguments.")
    parser.add_argument("--version", action="version", version=f"criu-model {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = cast("_LazyCommands", parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", action=_LazyCommands))
    for name, module in COMMANDS.items():
        sub.add_command(name, module.HELP)
    return parser


def make_console(wide: bool = False) -> Console:
    """The stdout console: piped output (grep, scripts) is never truncated or wrapped.

    On a terminal tables fit its width, unless `wide` (--wide) asks for full values.
    """
    from rich.console import Console

    # emoji=False: no ":name:" in a header or message of ours is an emoji code, and
    # rich's table of them costs 1.5 ms to load.
    if sys.stdout.isatty() and not wide:
        return Console(highlight=False, emoji=False)
    # A height too: rich sizes a TERM=dumb console 80x25 unless given both.
    return Console(highlight=False, emoji=False, width=100_000, height=25)


class _LazyConsole:
    """Stands for the stdout Console and makes it on first use.

    rich costs ~20 ms to import: `dump`, `thaw` and the JSON views print
    plain lines and never pay for it.
    """

    def __init__(self, wide: bool) -> None:
        self._wide = wide
        self._real: Console | None = None

    def __getattr__(self, name: str) -> Any:
        if self._real is None:
            self._real = make_console(self._wide)
        return getattr(self._real, name)


def run_and_exit() -> None:
    """The console script and ``python -m criu_model``: main(), then exit at once.

    Tearing the interpreter down frees every module and object one by one:
    10-12 ms after a dump or a show of a 50-process snapshot, a sixth of a
    one-process dump. Once main() has returned, every file the command wrote is
    closed (each is written under ``with`` or through a raw fd), so only the
    standard streams are flushed and the atexit handlers run, then the process
    ends with os._exit. When another non-daemon thread is still alive, or the
    exit status is a message, the interpreter exits the usual way.
    """
    try:
        status: object = main()
    except SystemExit as done:  # --help, --version and usage errors exit from argparse
        status = done.code
    if status is None:
        status = EXIT_OK
    threading = sys.modules.get("threading")  # not loaded: no thread was started
    if not isinstance(status, int) or (threading is not None and any(
            t.is_alive() and not t.daemon for t in threading.enumerate()
            if t is not threading.main_thread())):
        raise SystemExit(status)
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        if stream is None:  # started with that fd closed
            continue
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):  # `criu-model show ... | head`, or closed
            pass
        except OSError as err:  # a full disk under `> FILE`: not a success
            if stream is sys.stdout:
                _report_output_error(err)
            status = status or EXIT_FAIL
    os._exit(status)


_output_failed: list[OSError] = []  # reported once, whether main() or the last flush met it


def _report_output_error(err: OSError) -> None:
    if _output_failed or sys.stderr is None:
        return
    _output_failed.append(err)
    import contextlib  # only on this path: the CLI's start-up does not load it

    with contextlib.suppress(OSError):
        print(f"criu-model: error: cannot write the output: {err.strerror}", file=sys.stderr,
              flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; Ctrl-C before a command runs (parsing, set-up) exits 130 quietly."""
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print(_INTERRUPTED_EARLY, file=sys.stderr)
        return EXIT_INTERRUPTED


def _main(argv: Sequence[str] | None) -> int:
    args = _build_parser().parse_args(argv)
    module = COMMANDS[args.command]
    # after parsing: --help and usage errors need no rich
    console = cast("Console", _LazyConsole(wide=getattr(args, "wide", False)))

    from criu_model.names import printable

    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return int(module.run(args, console))
    except CriuModelError as err:
        if args.debug:
            raise
        print(printable(f"criu-model: error: {err}"), file=sys.stderr)
        if isinstance(err, BadArgument):   # a malformed value: a usage error, as argparse's
            return EXIT_USAGE
        return int(getattr(module, "ERROR_EXIT", EXIT_FAIL))
    except (KeyboardInterrupt, Terminated):
        print("criu-model: interrupted; targets were released, nothing was written",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK  # `criu-model show ... | head`
    except OSError as err:
        # What the library writes (images, pictures) fails as a CriuModelError
        # naming the file: a full disk or an I/O error that gets here is stdout's
        # (`criu-model show DIR > FILE` on a full filesystem).
        if args.debug or err.errno not in _OUTPUT_ERRNOS:
            raise
        _report_output_error(err)
        return EXIT_FAIL
    finally:
        signal.signal(signal.SIGTERM, previous)
