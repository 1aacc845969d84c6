"""The ``s3exp`` command line."""

from s3exp.cli._main import build_parser, main

__all__ = ["build_parser", "main"]
