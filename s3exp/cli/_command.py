"""The base class of every ``s3exp`` command: its name, help, arguments and handler in one
place (the shape of Optuna's CLI commands).

A command is a subclass that sets ``name`` and ``help``, adds its own arguments in
:meth:`Command.add_arguments` and does its work in :meth:`Command.run`; the registry in
``_app.py`` lists it once.  Handlers import what they need from the library inside
``run``, so that ``s3exp --help`` and an input error do not pay for pyarrow, boto3 or
duckdb.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, ClassVar

from s3exp.cli._options import STORE, StoreOptions

if TYPE_CHECKING:
    from s3exp.stores import Store

__all__ = ["Command"]


class Command:
    """One ``s3exp`` command.

    Class attributes:

    * ``name``: the word after ``s3exp`` (``status``), or after the group's word for a
      subcommand (``policy`` in ``s3exp infra policy``).
    * ``help``: one sentence for ``s3exp --help``; ``description`` (default: ``help``)
      heads ``s3exp NAME --help``.
    * ``store``: which store options the command takes and its default store (see
      :class:`StoreOptions`), or ``None`` for a command that opens no store.
    * ``command_line``: the metavar of a command line given after ``--`` (``s3exp worker
      EXP -- COMMAND ...``), or ``None`` for a command that takes none; for every other
      command a ``--`` is a usage error.  The command line arrives as ``args.template``
      (a list, empty if there was no ``--``).
    * ``subcommands``: for a group such as ``infra``, its commands; a group's own
      :meth:`run` is never called.

    :meth:`run` returns the exit status; it may raise any :class:`~s3exp.S3ExpError`,
    which ``main`` prints as one line and maps to an exit status.
    """

    name: ClassVar[str]
    help: ClassVar[str]
    description: ClassVar[str | None] = None
    store: ClassVar[StoreOptions | None] = STORE
    command_line: ClassVar[str | None] = None
    subcommands: ClassVar[tuple[type[Command], ...]] = ()

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Add this command's own arguments (the store options are added for it)."""

    def run(self, args: argparse.Namespace) -> int:
        """Do the command's work; return the exit status."""
        raise NotImplementedError(f"s3exp {self.name} is a group of commands")

    def open_store(self, args: argparse.Namespace) -> Store:
        """The store that ``--store`` / ``$S3EXP_STORE`` / this command's default names."""
        if self.store is None:
            raise TypeError(f"s3exp {self.name} takes no store options")
        return self.store.open(args)
