"""The ``s3exp`` command line.

==========================  ============================================================
``_app``                    the registry of commands, the parser, ``main``, exit statuses,
                            logging to the terminal
``_command``                :class:`Command`, the base class: name, help, arguments, handler
``_options``                the store options and their one resolver; argparse checkers
``_experiments``            submit, list, show
``_worker``                 worker
``_status``                 status
``_operate``                reset, pause, resume, cancel
``_tables``                 results, query, compact
``_local``                  demo, dev-server, serve
``_infra``                  infra policy
``_demo``                   the demo itself
==========================  ============================================================

Only this package and the Lambda handlers read environment variables.
"""

from s3exp.cli._app import build_parser, main

__all__ = ["build_parser", "main"]
