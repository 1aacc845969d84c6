"""Least-privilege IAM policy documents for the people and functions that use one project.

A project is a bucket and a prefix (``s3://bucket/prefix``).  Each role gets exactly the
key kinds of :func:`s3exp.bucket.keys.globs` that it reads and writes:

============  ==========================================================================
worker        reads specs, control and run state; writes leases, results, error and
              interrupt records under ``runs/``, metric shards under ``staging/`` and
              its request counts under ``costs/`` (the cost meter)
submitter     reads the project; creates specs, sets control (pause / resume / cancel)
analyst       reads the project; runs Athena queries in the stack's workgroup over its
              Glue tables; writes only Athena's own output under ``athena-results/``
compactor     reads the project; writes compaction manifests and parts, the published
              ``metrics/`` and ``results/`` parts, status rollups and its request
              counts under ``costs/``; deletes staged
              shards and pending parts (the compaction function's role)
reader        reads the project, nothing else (the status function's role)
============  ==========================================================================

Writes are **conditional or refused**.  S3 puts the request's ``If-None-Match`` and
``If-Match`` headers into the request context as ``s3:if-none-match`` / ``s3:if-match``,
so each writing role carries two Deny statements:

* ``DenyBlindWrites``: ``s3:PutObject`` when ``Null`` says *both* keys are absent
  (several keys in one ``Null`` block are ANDed), i.e. a write with neither header;
* ``DenyOverwrites``: ``s3:PutObject`` on create-only kinds (results, records, shards,
  specs, parts) when ``s3:if-none-match`` is absent, so not even an ``If-Match`` write can
  replace them: exactly one result per run, immutable specs.

and the compactor's deletes must carry ``If-Match`` (``DenyBlindDeletes``).  Multipart
uploads cannot carry these headers, so they are refused on these keys; s3exp writes every
object with one PUT.  :func:`bucket_policy` applies the same two Denies to *every*
principal through the stack's bucket policy.

``s3:ListBucket`` is granted only with ``s3:prefix`` under the project.  S3 also consults
it, with ``s3:prefix`` set to the key, to answer 404 rather than 403 for a missing key.
A HeadBucket carries no prefix and is refused, so the S3 store reads the server's clock
from a LIST of its own prefix.

The documents are plain dicts.  ``infra/sync_policies.py`` writes them into
``infra/template.yaml`` with CloudFormation placeholders, and ``s3exp infra policy``
prints them for people who do not deploy the stack.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from s3exp.bucket import keys

__all__ = ["ROLES", "Role", "bucket_policy", "policy"]

Role = Literal["worker", "submitter", "analyst", "compactor", "reader"]
ROLES: tuple[Role, ...] = get_args(Role)

# Key kinds (names of keys.globs()) by how they are written.
CREATE_ONLY = ("spec", "result", "error", "interrupt", "shard", "pending_part",
               "metrics_part", "results_part", "optuna_log", "optuna_snapshot")
COMPARE_AND_SWAP = ("control", "lease", "manifest", "status_rollup", "cost", "optuna_heartbeat")
# Optuna's journal (s3exp.optuna.storage): whoever runs trials writes it.
_OPTUNA = ("optuna_log", "optuna_snapshot", "optuna_heartbeat")

_WRITES: dict[Role, tuple[str, ...]] = {
    "worker": ("lease", "result", "error", "interrupt", "shard", "cost", *_OPTUNA),
    "submitter": ("spec", "control"),
    "analyst": (),
    "compactor": ("manifest", "pending_part", "metrics_part", "results_part", "status_rollup",
                  "cost"),
    "reader": (),
}
_DELETES: dict[Role, tuple[str, ...]] = {"compactor": ("shard", "pending_part")}
# What each role reads; None: every state kind (and only those).
_READS: dict[Role, tuple[str, ...] | None] = {
    "worker": ("spec", "control", "lease", "result", "error", "interrupt", "shard", "cost",
               *_OPTUNA),
    "submitter": None,
    "analyst": None,
    "compactor": None,
    "reader": None,
}

_ATHENA_QUERY = [
    "athena:StartQueryExecution", "athena:StopQueryExecution", "athena:GetQueryExecution",
    "athena:GetQueryResults", "athena:GetQueryResultsStream", "athena:BatchGetQueryExecution",
    "athena:ListQueryExecutions", "athena:GetWorkGroup",
]
_ATHENA_CATALOG = ["athena:GetDataCatalog", "athena:ListDatabases", "athena:GetDatabase",
                   "athena:ListTableMetadata", "athena:GetTableMetadata"]
_GLUE_READ = ["glue:GetDatabase", "glue:GetDatabases", "glue:GetTable", "glue:GetTables",
              "glue:GetPartition", "glue:GetPartitions", "glue:BatchGetPartition"]
# Athena writes query output to the workgroup's location with the caller's credentials.
_ATHENA_OUTPUT = ["s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]


def _state_kinds() -> list[str]:
    return [k for k in keys.globs() if k != "athena_results"]


def _top_prefixes() -> list[str]:
    """``experiments/``, ``runs/``, ...: every top-level prefix s3exp keeps state in."""
    out: list[str] = []
    for kind in _state_kinds():
        top = keys.globs()[kind].split("/", 1)[0] + "/"
        if top not in out:
            out.append(top)
    return out


class _Project:
    def __init__(self, bucket: str, prefix: str, partition: str) -> None:
        self.bucket_arn = f"arn:{partition}:s3:::{bucket}"
        self.root = f"{prefix.strip('/')}/" if prefix.strip("/") else ""

    def arn(self, pattern: str) -> str:
        return f"{self.bucket_arn}/{self.root}{pattern}"

    def kinds(self, kinds: tuple[str, ...] | list[str]) -> list[str]:
        globs = keys.globs()
        return [self.arn(globs[k]) for k in kinds]

    def list_statement(self) -> dict[str, Any]:
        st: dict[str, Any] = {"Sid": "ListProject", "Effect": "Allow", "Action": "s3:ListBucket",
                              "Resource": self.bucket_arn}
        if self.root:  # a store at the bucket's root is the whole bucket
            st["Condition"] = {"StringLike": {"s3:prefix": [f"{self.root}*"]}}
        return st


def _conditional_write_denies(resources: list[str], create_only: list[str],
                              principal: bool = False) -> list[dict[str, Any]]:
    extra: dict[str, Any] = {"Principal": "*"} if principal else {}
    out = [{"Sid": "DenyBlindWrites", "Effect": "Deny", **extra, "Action": "s3:PutObject",
            "Resource": resources,
            "Condition": {"Null": {"s3:if-none-match": "true", "s3:if-match": "true"}}}]
    if create_only:
        out.append({"Sid": "DenyOverwrites", "Effect": "Deny", **extra, "Action": "s3:PutObject",
                    "Resource": create_only, "Condition": {"Null": {"s3:if-none-match": "true"}}})
    return out


def policy(
    role: Role,
    bucket: str,
    prefix: str = "",
    *,
    partition: str = "aws",
    region: str = "*",
    account: str = "*",
    glue_database: str = "s3exp",
    workgroup: str = "s3exp",
    status_function_arn: str | None = None,
) -> dict[str, Any]:
    """The identity policy (a JSON-ready dict) of ``role`` for the project at
    ``s3://bucket/prefix``.

    ``region``/``account`` scope the analyst's Athena workgroup and Glue tables (default:
    any).  ``status_function_arn``, when given, lets the analyst and the submitter call the
    status function's URL.  Raises ValueError for an unknown role.
    """
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r} (choose from {', '.join(ROLES)})")
    p = _Project(bucket, prefix, partition)
    reads = _READS[role]
    readable = p.kinds(_state_kinds() if reads is None else reads)
    if role == "analyst":  # GetQueryResults reads Athena's output with the caller's rights
        readable.append(p.arn(keys.globs()["athena_results"]))
    statements: list[dict[str, Any]] = [
        {"Sid": "ReadProject", "Effect": "Allow", "Action": "s3:GetObject", "Resource": readable},
        p.list_statement(),
    ]
    writes = _WRITES[role]
    if writes:
        resources = p.kinds(writes)
        statements.append({"Sid": "WriteProject", "Effect": "Allow", "Action": "s3:PutObject",
                           "Resource": resources})
        statements += _conditional_write_denies(
            resources, p.kinds([k for k in writes if k in CREATE_ONLY]))
    deletes = _DELETES.get(role, ())
    if deletes:
        statements.append({"Sid": "DeleteCompacted", "Effect": "Allow", "Action": "s3:DeleteObject",
                           "Resource": p.kinds(deletes)})
        statements.append({"Sid": "DenyBlindDeletes", "Effect": "Deny", "Action": "s3:DeleteObject",
                           "Resource": p.kinds(deletes),
                           "Condition": {"Null": {"s3:if-match": "true"}}})
    if role == "analyst":
        athena = f"arn:{partition}:athena:{region}:{account}"
        glue = f"arn:{partition}:glue:{region}:{account}"
        statements += [
            {"Sid": "AthenaQueries", "Effect": "Allow", "Action": _ATHENA_QUERY,
             "Resource": f"{athena}:workgroup/{workgroup}"},
            {"Sid": "AthenaCatalog", "Effect": "Allow", "Action": _ATHENA_CATALOG,
             "Resource": f"{athena}:datacatalog/AwsDataCatalog"},
            {"Sid": "GlueTables", "Effect": "Allow", "Action": _GLUE_READ,
             "Resource": [f"{glue}:catalog", f"{glue}:database/{glue_database}",
                          f"{glue}:table/{glue_database}/*"]},
            {"Sid": "AthenaOutput", "Effect": "Allow", "Action": _ATHENA_OUTPUT,
             "Resource": p.arn(keys.globs()["athena_results"])},
            {"Sid": "AthenaOutputBucket", "Effect": "Allow",
             "Action": ["s3:GetBucketLocation", "s3:ListBucketMultipartUploads"],
             "Resource": p.bucket_arn},
        ]
    if status_function_arn and role in ("analyst", "submitter"):
        # Function URLs created since October 2025 need both actions; InvokeFunction is
        # granted only through the URL.
        statements += [
            {"Sid": "StatusPageUrl", "Effect": "Allow", "Action": "lambda:InvokeFunctionUrl",
             "Resource": status_function_arn,
             "Condition": {"StringEquals": {"lambda:FunctionUrlAuthType": "AWS_IAM"}}},
            {"Sid": "StatusPageInvoke", "Effect": "Allow", "Action": "lambda:InvokeFunction",
             "Resource": status_function_arn,
             "Condition": {"Bool": {"lambda:InvokedViaFunctionUrl": "true"}}},
        ]
    return {"Version": "2012-10-17", "Statement": statements}


def bucket_policy(bucket: str, prefix: str = "", *, partition: str = "aws") -> dict[str, Any]:
    """The bucket policy of the stack: TLS only, and the conditional-write Denies of the
    roles applied to every principal (administrators included) on every state key."""
    p = _Project(bucket, prefix, partition)
    state = [p.arn(f"{top}*") for top in _top_prefixes()]
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
         "Resource": [p.bucket_arn, f"{p.bucket_arn}/*"],
         "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
        *_conditional_write_denies(state, p.kinds(list(CREATE_ONLY)), principal=True),
    ]}
