"""Options that several commands share: the store options with the one store-URL
resolver, and the argparse ``type=`` checkers.

Only the CLI (and the Lambda handlers) read environment variables; here is where the CLI
does, for the store: ``--store``, else ``$S3EXP_STORE``, else the command's default.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from s3exp.core import ConfigError

if TYPE_CHECKING:
    from s3exp.stores import Store

__all__ = [
    "DEFAULT_STORE",
    "STORE",
    "StoreOptions",
    "non_negative_float",
    "port",
    "positive_int",
]

DEFAULT_STORE = "./s3exp-store"

T = TypeVar("T")


@dataclass(frozen=True)
class StoreOptions:
    """The store options of one command, and the one place that resolves them.

    ``default`` is the store used when neither ``--store`` nor ``$S3EXP_STORE`` names one;
    ``None`` makes that a ConfigError with the message ``missing``.  ``endpoint`` adds
    ``--endpoint-url`` and ``--addressing`` (for commands that send requests).  ``help``
    replaces the help text of ``--store``.
    """

    default: str | None = DEFAULT_STORE
    missing: str = "say which store: --store URL or $S3EXP_STORE"
    endpoint: bool = True
    help: str | None = None

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        """Add ``--store`` (and ``--endpoint-url``, ``--addressing``) to ``parser``."""
        fallback = f", else {self.default}" if self.default is not None else ""
        parser.add_argument("--store", metavar="URL", help=self.help or (
            f"s3://bucket/prefix, file:///dir or a directory (default: $S3EXP_STORE{fallback})"))
        if not self.endpoint:
            return
        parser.add_argument("--endpoint-url", metavar="URL",
                            help="S3 endpoint for s3:// stores (default: $AWS_ENDPOINT_URL_S3, "
                                 "$AWS_ENDPOINT_URL, else AWS)")
        parser.add_argument("--addressing", choices=("auto", "path", "virtual"), default="auto",
                            help="S3 addressing style; auto means path-style for custom endpoints")

    def url(self, args: argparse.Namespace) -> str:
        """The store URL: ``--store``, else ``$S3EXP_STORE``, else ``default``.

        An explicit ``--store ""`` is returned as given, so that opening it is an error
        (``store URL is empty``) rather than a silent fallback; an empty variable counts
        as unset.  Raises ConfigError when nothing names a store and there is no default.
        """
        if args.store is not None:
            return str(args.store)
        url = os.environ.get("S3EXP_STORE") or self.default
        if url is None:
            raise ConfigError(self.missing)
        return url

    def endpoint_url(self, args: argparse.Namespace) -> str | None:
        """``--endpoint-url``, else the variables boto3 would read, so that open_store
        validates the endpoint and its errors name it."""
        if not self.endpoint:
            return None
        given: str | None = getattr(args, "endpoint_url", None)
        if given is not None:
            return given
        if os.environ.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "").lower() == "true":
            return None
        return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None

    def path_style(self, args: argparse.Namespace) -> bool | None:
        """``--addressing`` as open_store takes it: None lets the store choose."""
        if not self.endpoint:
            return None
        return {"auto": None, "path": True, "virtual": False}[args.addressing]

    def open(self, args: argparse.Namespace) -> Store:
        """Open the store these options name.  Nothing is sent yet; a bad URL or endpoint
        is a ConfigError."""
        from s3exp.stores import open_store

        return open_store(self.url(args), endpoint_url=self.endpoint_url(args),
                          path_style=self.path_style(args))


STORE = StoreOptions()
"""The store options of most commands (default ./s3exp-store)."""


def _checked(parse: Callable[[str], T], unparsable: str, ok: Callable[[T], bool],
             out_of_range: str) -> Callable[[str], T]:
    """An argparse ``type``: ``parse`` the text, then require ``ok``; the messages get
    ``{text}`` and ``{value}``."""
    def convert(text: str) -> T:
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(unparsable.format(text=text)) from None
        if not ok(value):
            raise argparse.ArgumentTypeError(out_of_range.format(text=text, value=value))
        return value
    return convert


positive_int = _checked(int, "invalid int value: {text!r}", lambda v: v >= 1,
                        "must be at least 1, not {value}")
port = _checked(int, "invalid port: {text!r}", lambda v: 0 <= v <= 65535,
                "a port is 0 to 65535, not {value}")
non_negative_float = _checked(float, "invalid number: {text!r}",
                              lambda v: v >= 0 and v != float("inf"),
                              "must be a finite number >= 0, not {text}")
