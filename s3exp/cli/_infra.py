"""``s3exp infra``: the AWS deployment (``infra/template.yaml``); today one subcommand,
``policy``."""

from __future__ import annotations

import argparse
import json

from s3exp.cli._command import Command
from s3exp.cli._options import StoreOptions
from s3exp.core import ConfigError

__all__ = ["Infra", "InfraPolicy"]

POLICY_STORE = StoreOptions(default=None, endpoint=False,
                            missing="say which project the policy is for: --store s3://bucket/prefix",
                            help="s3://bucket/prefix (default: $S3EXP_STORE)")
"""No default store: a policy for ./s3exp-store would mean nothing.  Nothing is sent, so
there is no endpoint to choose."""


class InfraPolicy(Command):
    name = "policy"
    help = ("Print the least-privilege IAM policy (JSON) of a role for the project at --store: "
            "the same document the stack attaches.")
    description = ("Print the least-privilege IAM policy (JSON) of a role for the project at "
                   "--store, for people who do not deploy infra/template.yaml.")
    store = POLICY_STORE

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        from s3exp.bucket import ROLES

        parser.add_argument("--role", required=True, choices=ROLES,
                            help="worker, submitter, analyst, compactor, or reader (read-only)")
        parser.add_argument("--partition", default="aws", help="AWS partition (default: %(default)s)")
        parser.add_argument("--region", default="*", help="region of the Athena workgroup and "
                            "Glue tables (analyst; default: any)")
        parser.add_argument("--account", default="*", help="account id of the workgroup and "
                            "tables (analyst; default: any)")
        parser.add_argument("--glue-database", default="s3exp",
                            help="Glue database (analyst; default: %(default)s)")
        parser.add_argument("--workgroup", default="s3exp",
                            help="Athena workgroup (analyst; default: %(default)s)")
        parser.add_argument("--status-function-arn", metavar="ARN",
                            help="let the analyst or submitter open the status function's URL")

    def run(self, args: argparse.Namespace) -> int:
        from s3exp import S3Store
        from s3exp.bucket import policy

        url = POLICY_STORE.url(args)
        if not url.lower().startswith("s3://"):
            raise ConfigError(f"IAM policies are for S3 stores; {url!r} is not s3://bucket/prefix")
        store = self.open_store(args)  # validates the bucket and prefix; sends nothing
        assert isinstance(store, S3Store)
        doc = policy(args.role, store.bucket, store.prefix, partition=args.partition,
                     region=args.region, account=args.account, glue_database=args.glue_database,
                     workgroup=args.workgroup, status_function_arn=args.status_function_arn)
        store.close()
        print(json.dumps(doc, indent=2))
        return 0


class Infra(Command):
    name = "infra"
    help = "The AWS deployment (infra/template.yaml)."
    store = None
    subcommands = (InfraPolicy,)
