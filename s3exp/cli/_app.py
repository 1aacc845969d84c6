"""The ``s3exp`` program: the registry of commands, the parser built from it, logging to
the terminal, and the mapping from errors to exit statuses.

Every error prints one line, ``s3exp: error: ...`` (argparse's ``s3exp CMD: error: ...``
for a usage error), with control characters escaped, and exits with the status that
:data:`EXIT_STATUS` gives its class.  Library code logs through ``logging`` under the
``s3exp`` logger and never prints; :func:`main` alone decides what of it reaches the
terminal.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Iterator, Sequence
from typing import NoReturn

from s3exp._version import __version__
from s3exp.cli._command import Command
from s3exp.cli._experiments import ListExperiments, Show, Submit
from s3exp.cli._infra import Infra
from s3exp.cli._local import Demo, DevServer, Serve
from s3exp.cli._operate import Cancel, Pause, Reset, Resume
from s3exp.cli._status import Status
from s3exp.cli._tables import Compact, Query, Results
from s3exp.cli._worker import WorkerCommand
from s3exp.core import (
    ConfigError,
    DamagedObject,
    Interrupted,
    NotFoundError,
    S3ExpError,
    SpecConflict,
    SpecError,
    StoreError,
)

__all__ = ["COMMANDS", "EXIT_STATUS", "build_parser", "exit_status", "main"]

COMMANDS: tuple[type[Command], ...] = (
    Submit, ListExperiments, Show,
    WorkerCommand,
    Status,
    Reset, Pause, Resume, Cancel,
    Results, Compact, Query,
    Demo, DevServer, Serve,
    Infra,
)
"""Every command, in the order of ``s3exp --help``.  Adding a command is one class and
one entry here."""

USAGE = 2
EXIT_STATUS: tuple[tuple[type[S3ExpError], int], ...] = (
    (SpecError, USAGE), (ConfigError, USAGE), (SpecConflict, USAGE), (NotFoundError, USAGE),
    (DamagedObject, 4),
    (StoreError, 3),
)
"""The exit status of an error: the first entry whose class it is an instance of; any
other S3ExpError exits with 2, as every error did before these were told apart.

* 2, input the user must fix: a spec, a store URL, a credential, a missing bucket, an
  unknown experiment, a different spec under the same name (and argparse's usage errors);
* 3, the store is unreachable or refused the request: a StoreError, e.g. Unavailable
  after retries.  Running the same command again later may succeed;
* 4, the store holds damaged data (DamagedObject): neither retrying nor fixing the
  command helps; the object that the error names must be repaired or removed.
"""

EPILOG = """\
exit status:
  0    success
  1    s3exp worker: the last attempt this worker made of some run failed
  2    input to fix: a spec, store URL, credential, bucket, name or option
  3    the store is unreachable or refused the request (after retries)
  4    the store holds damaged data (the error names the object)
  130  interrupted (Ctrl-C)
  143  s3exp worker ended by SIGTERM (its run released as interrupted)
"""


def exit_status(error: S3ExpError) -> int:
    """The exit status for ``error`` (see :data:`EXIT_STATUS`)."""
    return next((code for cls, code in EXIT_STATUS if isinstance(error, cls)), USAGE)


def _one_line(text: str) -> str:
    """Escape control characters so that a hostile name cannot break the one-line rule."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE, f"{self.prog}: error: {_one_line(message)} (see {self.prog} --help)\n")


# -- the parser -------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command in :data:`COMMANDS`.  A parsed command's namespace has
    ``handler`` (the :class:`Command`), ``handler_parser`` (its parser, for usage errors
    found after parsing) and ``log_level``."""
    parser = _Parser(
        prog="s3exp",
        description="Run ML experiments from an S3 bucket (or a directory), with no server.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,  # keeps the epilog's table
    )
    parser.add_argument("--version", action="version", version=f"s3exp {__version__}")
    loudness = parser.add_mutually_exclusive_group()
    loudness.add_argument("-v", "--verbose", dest="log_level", action="store_const",
                          const=logging.DEBUG, default=logging.INFO,
                          help="also print debug messages (give it before the command)")
    loudness.add_argument("-q", "--quiet", dest="log_level", action="store_const",
                          const=logging.ERROR,
                          help="print errors only, no warnings or informational messages "
                               "(give it before the command)")
    _add_commands(parser, COMMANDS, "command_name")
    return parser


def _add_commands(parser: argparse.ArgumentParser, commands: Sequence[type[Command]],
                  dest: str) -> None:
    sub = parser.add_subparsers(dest=dest, required=True, metavar="COMMAND", parser_class=_Parser)
    for cls in commands:
        p = sub.add_parser(cls.name, help=cls.help, description=cls.description or cls.help)
        if cls.subcommands:
            _add_commands(p, cls.subcommands, f"{dest}_{cls.name}")
            continue
        command = cls()
        p.set_defaults(handler=command, handler_parser=p)
        if cls.store is not None:
            cls.store.add_to(p)
        command.add_arguments(p)
        if cls.command_line is not None:  # argparse's usage cannot show what follows "--"
            usage = p.format_usage().removeprefix("usage: ").rstrip("\n").replace("%", "%%")
            p.usage = f"{usage} -- {cls.command_line} ..."


def _command_line_takers(commands: Sequence[type[Command]] = COMMANDS, prefix: str = "s3exp") -> list[str]:
    """``s3exp worker`` and any other command that takes a command line after ``--``."""
    out: list[str] = []
    for cls in commands:
        name = f"{prefix} {cls.name}"
        if cls.subcommands:
            out += _command_line_takers(cls.subcommands, name)
        elif cls.command_line is not None:
            out.append(name)
    return out


def _parse(argv: list[str]) -> argparse.Namespace:
    """Parse ``argv``; what follows the first ``--`` is the command line of a command that
    takes one (``args.template``) and a usage error for any other command."""
    template: list[str] | None = None
    if "--" in argv:
        cut = argv.index("--")
        argv, template = argv[:cut], argv[cut + 1:]
    args = build_parser().parse_args(argv)
    command: Command = args.handler
    if command.command_line is not None:
        args.template = template or []
    elif template is not None:
        parser: argparse.ArgumentParser = args.handler_parser
        parser.error(f"{parser.prog} takes no command line after '--' "
                     f"(only {' and '.join(_command_line_takers())} does)")
    return args


# -- logging ----------------------------------------------------------------------------


class _StderrHandler(logging.Handler):
    """``s3exp: <message>`` to ``sys.stderr`` as it is when the record is emitted (a test's
    capture, or a caller, may have replaced it since the handler was installed)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("s3exp: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


@contextlib.contextmanager
def _logging_to_stderr(level: int) -> Iterator[None]:
    """Let the ``s3exp`` logger's records of ``level`` and above through to stderr while
    a command runs, and restore the logger after: ``main`` may be called in-process."""
    logger = logging.getLogger("s3exp")
    handler = _StderrHandler()
    saved = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(level)
    # The terminal is ours: a root handler that a caller configured would print it twice.
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


# -- main -------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``s3exp ARGV`` (default: ``sys.argv[1:]``) and return its exit status (see
    ``s3exp --help``).  A usage error raises SystemExit(2), as argparse does."""
    args = _parse(list(sys.argv[1:] if argv is None else argv))
    command: Command = args.handler
    with _logging_to_stderr(args.log_level):
        try:
            return command.run(args)
        except S3ExpError as e:
            print(f"s3exp: error: {_one_line(str(e))}", file=sys.stderr)
            return exit_status(e)
        except KeyboardInterrupt as e:
            print("s3exp: interrupted", file=sys.stderr)
            return 128 + e.signum if isinstance(e, Interrupted) else 130
        except BrokenPipeError:  # e.g. `s3exp show EXP | head`
            sys.stderr.close()
            return 0
