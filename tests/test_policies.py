"""The IAM policies of ``s3exp.bucket._policies``, judged by a small IAM evaluator.

The evaluator implements what the documents use and refuses anything else: Allow/Deny
(an explicit Deny wins; no Allow means denied), Action and Resource wildcards (``*``
spans ``/``), and the condition operators StringLike, StringEquals, Bool and Null (keys
within one operator are ANDed, values within one key ORed; a missing key fails every
operator but Null).  Requests carry the context S3 builds: ``s3:if-none-match`` /
``s3:if-match`` when the request has those headers, ``s3:prefix`` on ListBucket.
"""

from __future__ import annotations

import importlib.util
import json
import re
from types import ModuleType
from typing import Any

import pytest

from s3exp.bucket import keys
from s3exp.bucket._policies import ROLES, Role, bucket_policy, policy
from s3exp.cli import main
from tests._cfn import REPO, load_template, render

BUCKET = "exp-bucket"
PREFIX = "team/proj"
REGION, ACCOUNT = "eu-west-1", "123456789012"
STATUS_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:s3exp-status"

# -- the evaluator ----------------------------------------------------------------------


def _glob(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    rx = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(rx, value, re.IGNORECASE if ignore_case else 0) is not None


def _listed(x: Any) -> list[Any]:
    return x if isinstance(x, list) else [x]


def _condition_holds(condition: dict[str, dict[str, Any]], ctx: dict[str, str]) -> bool:
    for op, block in condition.items():
        for key, wanted in block.items():
            values = [str(v) for v in _listed(wanted)]
            present = key in ctx
            if op == "Null":
                assert values in (["true"], ["false"]), values
                if present == (values[0] == "true"):
                    return False
            elif op == "StringLike":
                if not present or not any(_glob(v, ctx[key]) for v in values):
                    return False
            elif op == "StringEquals":
                if not present or ctx[key] not in values:
                    return False
            elif op == "Bool":
                if not present or ctx[key].lower() not in [v.lower() for v in values]:
                    return False
            else:
                raise AssertionError(f"the test evaluator does not implement {op}")
    return True


def decide(docs: list[dict[str, Any]], action: str, resource: str,
           ctx: dict[str, str] | None = None) -> str:
    """``"allow"``, ``"deny"`` (explicit) or ``"implicit"`` (no statement allows it)."""
    ctx = {"aws:SecureTransport": "true", **(ctx or {})}
    allowed = False
    for doc in docs:
        assert doc["Version"] == "2012-10-17"
        for st in doc["Statement"]:
            assert not {"NotAction", "NotResource", "NotPrincipal"} & set(st), st
            assert st.get("Principal", "*") == "*", st
            if not any(_glob(a, action, ignore_case=True) for a in _listed(st["Action"])):
                continue
            if not any(_glob(r, resource) for r in _listed(st["Resource"])):
                continue
            if not _condition_holds(st.get("Condition", {}), ctx):
                continue
            if st["Effect"] == "Deny":
                return "deny"
            assert st["Effect"] == "Allow"
            allowed = True
    return "allow" if allowed else "implicit"


def allowed(docs: list[dict[str, Any]], action: str, resource: str,
            ctx: dict[str, str] | None = None) -> bool:
    return decide(docs, action, resource, ctx) == "allow"


# -- requests ---------------------------------------------------------------------------

BUCKET_ARN = f"arn:aws:s3:::{BUCKET}"
# One key of every kind, as the library builds them.
KEYS: dict[str, str] = {
    "spec": keys.spec("exp"),
    "control": keys.control("exp"),
    "lease": keys.lease("exp", "ds__m__r0"),
    "result": keys.result("exp", "ds__m__r0", 1),
    "error": keys.error("exp", "ds__m__r0", 3),
    "interrupt": keys.interrupt("exp", "ds__m__r0", 2),
    "shard": keys.shard("exp", "ds__m__r0", 1, 7),
    "manifest": keys.manifest("exp"),
    "pending_part": keys.pending_part("exp", "tok", 0),
    "status_rollup": keys.status_rollup("exp"),
    "cost": keys.cost("exp", "host-1-ab12cd"),
    "metrics_part": keys.table_part("metrics", "exp", 1, "tok", 0),
    "results_part": keys.table_part("results", "exp", 1, "tok", 0),
    "athena_results": f"{keys.ATHENA_RESULTS}2024/q-1234.csv",
    "optuna_log": keys.optuna_log(42),
    "optuna_snapshot": keys.optuna_snapshot(100),
    "optuna_heartbeat": keys.optuna_heartbeat(7),
}
CONDITIONS: dict[str, dict[str, str]] = {
    "blind": {},
    "if-none-match": {"s3:if-none-match": "*"},
    "if-match": {"s3:if-match": '"0123abcd"'},
}


def arn(key: str, prefix: str = PREFIX, bucket: str = BUCKET) -> str:
    return f"arn:aws:s3:::{bucket}/{prefix}/{key}" if prefix else f"arn:aws:s3:::{bucket}/{key}"


def docs_for(role: Role) -> list[dict[str, Any]]:
    return [policy(role, BUCKET, PREFIX, region=REGION, account=ACCOUNT,
                   status_function_arn=STATUS_ARN)]


# Which PutObject requests each role may make: kind -> the conditions it may use.
CREATE = {"if-none-match"}
CAS = {"if-none-match", "if-match"}
WRITABLE: dict[Role, dict[str, set[str]]] = {
    "worker": {"lease": CAS, "result": CREATE, "error": CREATE, "interrupt": CREATE,
               "shard": CREATE, "cost": CAS, "optuna_log": CREATE, "optuna_snapshot": CREATE,
               "optuna_heartbeat": CAS},
    "submitter": {"spec": CREATE, "control": CAS},
    "compactor": {"manifest": CAS, "status_rollup": CAS, "pending_part": CREATE,
                  "metrics_part": CREATE, "results_part": CREATE, "cost": CAS},
    "analyst": {"athena_results": set(CONDITIONS)},  # Athena's own output, nothing else
    "reader": {},
}
OTHER_WRITES = ["s3:PutObjectAcl", "s3:PutObjectTagging", "s3:DeleteObjectTagging",
                "s3:RestoreObject", "s3:PutObjectRetention", "s3:PutObjectLegalHold",
                "s3:DeleteObjectVersion", "s3:PutObjectVersionAcl"]
BUCKET_WRITES = ["s3:PutBucketPolicy", "s3:DeleteBucketPolicy", "s3:DeleteBucket",
                 "s3:PutLifecycleConfiguration", "s3:PutBucketNotification",
                 "s3:PutBucketVersioning", "s3:PutBucketAcl", "s3:PutEncryptionConfiguration"]
# Keys of the same kinds that are not this project's.
FOREIGN_PREFIXES = ["team/other", "team/proj2", "team", "", "proj"]


# -- the globs the policies are built from ------------------------------------------------


def test_every_kind_of_key_matches_its_own_glob_only() -> None:
    globs = keys.globs()
    assert set(globs) == set(KEYS)
    for kind, key in KEYS.items():
        matching = {k for k, g in globs.items() if _glob(g, key)}
        assert matching == {kind}, (kind, key, matching)



def test_an_unknown_role_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown role 'admin'"):
        policy("admin", BUCKET, PREFIX)  # type: ignore[arg-type]

# -- writes ---------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_each_role_writes_exactly_its_keys_with_exactly_its_conditions(role: Role) -> None:
    docs = docs_for(role)
    got = {(kind, cond) for kind, key in KEYS.items() for cond, ctx in CONDITIONS.items()
           if allowed(docs, "s3:PutObject", arn(key), ctx)}
    want = {(kind, cond) for kind, conds in WRITABLE[role].items() for cond in conds}
    assert got == want


@pytest.mark.parametrize("role", ROLES)
def test_no_role_writes_outside_its_project(role: Role) -> None:
    docs = docs_for(role)
    for prefix in FOREIGN_PREFIXES:
        for key in KEYS.values():
            for ctx in CONDITIONS.values():
                assert not allowed(docs, "s3:PutObject", arn(key, prefix), ctx), (prefix, key)
                assert not allowed(docs, "s3:DeleteObject", arn(key, prefix), ctx), (prefix, key)
    for key in KEYS.values():  # the same key in another bucket
        assert not allowed(docs, "s3:PutObject", arn(key, bucket="other-bucket"),
                           CONDITIONS["if-none-match"])


@pytest.mark.parametrize("role", ROLES)
def test_no_role_changes_acls_tags_versions_or_the_bucket(role: Role) -> None:
    docs = docs_for(role)
    for action in OTHER_WRITES:
        for key in KEYS.values():
            assert not allowed(docs, action, arn(key)), (action, key)
    for action in BUCKET_WRITES:
        assert not allowed(docs, action, BUCKET_ARN), action


def test_worker_claims_and_renews_leases_only_with_a_condition() -> None:
    docs = docs_for("worker")
    lease = arn(KEYS["lease"])
    assert allowed(docs, "s3:PutObject", lease, {"s3:if-none-match": "*"})  # claim
    assert allowed(docs, "s3:PutObject", lease, {"s3:if-match": '"e1"'})  # renew, takeover
    assert decide(docs, "s3:PutObject", lease) == "deny"  # blind: explicitly denied
    result = arn(KEYS["result"])
    assert allowed(docs, "s3:PutObject", result, {"s3:if-none-match": "*"})
    assert decide(docs, "s3:PutObject", result, {"s3:if-match": '"e1"'}) == "deny"  # no overwrite


def test_worker_cannot_write_specs_control_or_compacted_tables() -> None:
    docs = docs_for("worker")
    for kind in ("spec", "control", "manifest", "metrics_part", "results_part", "status_rollup"):
        for ctx in CONDITIONS.values():
            assert not allowed(docs, "s3:PutObject", arn(KEYS[kind]), ctx), kind
    for kind in KEYS:
        assert not allowed(docs, "s3:DeleteObject", arn(KEYS[kind]), CONDITIONS["if-match"]), kind


def test_submitter_creates_specs_but_not_leases_or_results() -> None:
    docs = docs_for("submitter")
    assert allowed(docs, "s3:PutObject", arn(KEYS["spec"]), {"s3:if-none-match": "*"})
    assert not allowed(docs, "s3:PutObject", arn(KEYS["spec"]), {"s3:if-match": '"e"'})  # immutable
    assert allowed(docs, "s3:PutObject", arn(KEYS["control"]), {"s3:if-match": '"e"'})
    for kind in ("lease", "result", "error", "shard"):
        for ctx in CONDITIONS.values():
            assert not allowed(docs, "s3:PutObject", arn(KEYS[kind]), ctx), kind


@pytest.mark.parametrize("role", ["analyst", "reader"])
def test_analyst_and_reader_write_nothing_of_the_project(role: Role) -> None:
    docs = docs_for(role)
    for kind, key in KEYS.items():
        if kind == "athena_results":
            continue
        for action in ["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", *OTHER_WRITES]:
            for ctx in CONDITIONS.values():
                assert not allowed(docs, action, arn(key), ctx), (action, key)
    for action in ["glue:CreateTable", "glue:UpdateTable", "glue:DeleteTable",
                   "glue:BatchCreatePartition", "glue:DeleteDatabase", "athena:DeleteWorkGroup",
                   "athena:UpdateWorkGroup", "athena:CreateWorkGroup"]:
        for resource in ("*", f"arn:aws:glue:{REGION}:{ACCOUNT}:table/s3exp/metrics",
                         f"arn:aws:athena:{REGION}:{ACCOUNT}:workgroup/s3exp"):
            assert not allowed(docs, action, resource), (action, resource)


def test_compactor_deletes_only_shards_and_pending_parts_and_only_with_if_match() -> None:
    docs = docs_for("compactor")
    for kind in KEYS:
        for cond, ctx in CONDITIONS.items():
            ok = allowed(docs, "s3:DeleteObject", arn(KEYS[kind]), ctx)
            assert ok == (kind in ("shard", "pending_part") and cond == "if-match"), (kind, cond)


# -- reads and listing ------------------------------------------------------------------


def test_reads_are_limited_to_the_project() -> None:
    for role in ROLES:
        docs = docs_for(role)
        assert allowed(docs, "s3:GetObject", arn(KEYS["spec"])), role
        assert allowed(docs, "s3:GetObject", arn(KEYS["lease"])), role
        for prefix in FOREIGN_PREFIXES:
            assert not allowed(docs, "s3:GetObject", arn(KEYS["spec"], prefix)), (role, prefix)
    worker = docs_for("worker")
    assert not allowed(worker, "s3:GetObject", arn(KEYS["metrics_part"]))  # not its business
    # A writer reads back what it wrote when a reply was lost (recognising its own write).
    for kind in WRITABLE["worker"]:
        assert allowed(worker, "s3:GetObject", arn(KEYS[kind])), kind
    for kind in KEYS:
        expected = kind != "athena_results"
        assert allowed(docs_for("reader"), "s3:GetObject", arn(KEYS[kind])) == expected, kind
        assert allowed(docs_for("analyst"), "s3:GetObject", arn(KEYS[kind])), kind


@pytest.mark.parametrize("role", ROLES)
def test_listing_needs_a_prefix_inside_the_project(role: Role) -> None:
    docs = docs_for(role)
    for inside in (f"{PREFIX}/", f"{PREFIX}/{keys.runs_prefix('exp')}", f"{PREFIX}/{keys.EXPERIMENTS}"):
        assert allowed(docs, "s3:ListBucket", BUCKET_ARN, {"s3:prefix": inside}), inside
    # S3 answers 404 (not 403) for a missing key when ListBucket allows s3:prefix = the key.
    assert allowed(docs, "s3:ListBucket", BUCKET_ARN, {"s3:prefix": f"{PREFIX}/{KEYS['control']}"})
    for outside in ("", "team/", "team/proj2/", "team/other/runs/", "other/"):
        assert not allowed(docs, "s3:ListBucket", BUCKET_ARN, {"s3:prefix": outside}), outside
    # HeadBucket and an unprefixed LIST carry no s3:prefix at all.
    assert not allowed(docs, "s3:ListBucket", BUCKET_ARN)
    assert not allowed(docs, "s3:ListBucket", "arn:aws:s3:::other-bucket", {"s3:prefix": f"{PREFIX}/"})


def test_a_store_at_the_bucket_root_may_list_the_whole_bucket() -> None:
    docs = [policy("worker", BUCKET, "")]
    assert allowed(docs, "s3:ListBucket", BUCKET_ARN)
    assert allowed(docs, "s3:PutObject", arn(KEYS["lease"], ""), {"s3:if-none-match": "*"})
    assert not allowed(docs, "s3:PutObject", arn(KEYS["spec"], ""), {"s3:if-none-match": "*"})


def test_prefixed_s3_store_reads_the_clock_with_a_list_of_its_own_prefix(
        moto_bucket: Any) -> None:
    """HeadBucket has no s3:prefix, so the policies above refuse it; the store must not
    need it."""
    store = moto_bucket(PREFIX)
    store._clock_anchor = None
    store.requests.reset()
    store.server_time()
    assert store.requests.snapshot() == {"LIST": 1}


# -- the analyst's Athena -------------------------------------------------------------------


def test_analyst_queries_in_its_workgroup_and_reads_the_glue_tables() -> None:
    docs = docs_for("analyst")
    wg = f"arn:aws:athena:{REGION}:{ACCOUNT}:workgroup/s3exp"
    for action in ("athena:StartQueryExecution", "athena:GetQueryResults", "athena:GetQueryExecution"):
        assert allowed(docs, action, wg), action
        assert not allowed(docs, action, f"arn:aws:athena:{REGION}:{ACCOUNT}:workgroup/primary")
        assert not allowed(docs, action, f"arn:aws:athena:us-east-1:{ACCOUNT}:workgroup/s3exp")
    for table in ("metrics", "results"):
        assert allowed(docs, "glue:GetTable", f"arn:aws:glue:{REGION}:{ACCOUNT}:table/s3exp/{table}")
    assert not allowed(docs, "glue:GetTable", f"arn:aws:glue:{REGION}:{ACCOUNT}:table/hr/salaries")
    out = arn(KEYS["athena_results"])
    assert allowed(docs, "s3:PutObject", out) and allowed(docs, "s3:GetObject", out)
    for role in ("worker", "submitter", "compactor", "reader"):
        assert not allowed(docs_for(role), "athena:StartQueryExecution", wg), role


def test_status_page_only_through_its_iam_url() -> None:
    for role in ("analyst", "submitter"):
        docs = docs_for(role)
        assert allowed(docs, "lambda:InvokeFunctionUrl", STATUS_ARN,
                       {"lambda:FunctionUrlAuthType": "AWS_IAM"})
        assert allowed(docs, "lambda:InvokeFunction", STATUS_ARN,
                       {"lambda:InvokedViaFunctionUrl": "true"})
        assert not allowed(docs, "lambda:InvokeFunction", STATUS_ARN)  # direct invoke
        assert not allowed(docs, "lambda:InvokeFunctionUrl", STATUS_ARN + "-other",
                           {"lambda:FunctionUrlAuthType": "AWS_IAM"})
    others: tuple[Role, ...] = ("worker", "compactor", "reader")
    for role in others:
        assert not allowed(docs_for(role), "lambda:InvokeFunctionUrl", STATUS_ARN,
                           {"lambda:FunctionUrlAuthType": "AWS_IAM"}), role


# -- the bucket policy: every principal, administrators included -------------------------------

ADMIN = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


def test_bucket_policy_refuses_blind_writes_and_overwrites_to_anyone() -> None:
    docs = [ADMIN, bucket_policy(BUCKET, PREFIX)]
    for kind, key in KEYS.items():
        blind = allowed(docs, "s3:PutObject", arn(key))
        created = allowed(docs, "s3:PutObject", arn(key), CONDITIONS["if-none-match"])
        swapped = allowed(docs, "s3:PutObject", arn(key), CONDITIONS["if-match"])
        if kind == "athena_results":  # Athena's output is written plainly (multipart)
            assert blind and created and swapped
            continue
        assert not blind and created, kind
        assert swapped == (kind in ("control", "lease", "manifest", "status_rollup", "cost",
                                    "optuna_heartbeat")), kind
    # A key s3exp does not know, under a state prefix, is not blindly writable either.
    assert not allowed(docs, "s3:PutObject", arn("runs/exp/notes.txt"))
    # Outside the project the bucket policy does not interfere; teardown can delete.
    assert allowed(docs, "s3:PutObject", arn("x.txt", "elsewhere"))
    assert allowed(docs, "s3:DeleteObject", arn(KEYS["lease"]))
    # Plain HTTP is refused for everything.
    assert decide(docs, "s3:GetObject", arn(KEYS["spec"]), {"aws:SecureTransport": "false"}) == "deny"


# -- the template holds exactly these documents ---------------------------------------------

TEMPLATE_VALUES = {
    "BucketName": BUCKET, "Prefix": PREFIX, "AWS::Partition": "aws", "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT, "GlueDatabaseName": "s3exp", "AthenaWorkGroupName": "s3exp",
    "StatusFunction.Arn": STATUS_ARN, "DataBucket": BUCKET,
}
TEMPLATE_POLICIES: dict[str, Role] = {"WorkerPolicy": "worker", "SubmitterPolicy": "submitter",
                                      "AnalystPolicy": "analyst", "CompactorPolicy": "compactor",
                                      "ReaderPolicy": "reader"}


def test_template_policies_are_the_generated_documents() -> None:
    resources = load_template()["Resources"]
    for logical_id, role in TEMPLATE_POLICIES.items():
        assert resources[logical_id]["Type"] == "AWS::IAM::ManagedPolicy"
        doc = render(resources[logical_id]["Properties"]["PolicyDocument"], TEMPLATE_VALUES)
        assert doc == policy(role, BUCKET, PREFIX, region=REGION, account=ACCOUNT,
                             status_function_arn=STATUS_ARN), logical_id
    doc = render(resources["DataBucketPolicy"]["Properties"]["PolicyDocument"], TEMPLATE_VALUES)
    assert doc == bucket_policy(BUCKET, PREFIX)
    # The functions run with the compactor's and the reader's policy.
    assert resources["CompactFunction"]["Properties"]["Policies"] == [{"Ref": "CompactorPolicy"}]
    assert resources["StatusFunction"]["Properties"]["Policies"] == [{"Ref": "ReaderPolicy"}]


def _sync_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sync_policies", REPO / "infra" / "sync_policies.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_template_generated_block_is_up_to_date() -> None:
    sync = _sync_script()
    text = sync.TEMPLATE.read_text()
    assert sync.render(text) == text, "run: python infra/sync_policies.py"
    assert sync.main(["--check"]) == 0


# -- the CLI ----------------------------------------------------------------------------------


def test_cli_prints_the_policy(capsys: pytest.CaptureFixture[str]) -> None:
    for role in ROLES:
        assert main(["infra", "policy", "--role", role, "--store", f"s3://{BUCKET}/{PREFIX}/"]) == 0
        assert json.loads(capsys.readouterr().out) == policy(role, BUCKET, PREFIX)
    assert main(["infra", "policy", "--role", "analyst", "--store", f"s3://{BUCKET}/{PREFIX}",
                 "--region", REGION, "--account", ACCOUNT, "--status-function-arn", STATUS_ARN]) == 0
    assert json.loads(capsys.readouterr().out) == docs_for("analyst")[0]


@pytest.mark.parametrize("argv", [
    ["--role", "admin", "--store", "s3://b-1/p"],
    ["--store", "s3://b-1/p"],
    ["--role", "worker", "--store", "./a-directory"],
    ["--role", "worker", "--store", "file:///tmp/x"],
    ["--role", "worker", "--store", "s3://Not_A_Bucket/p"],
    ["--role", "worker", "--store", "s3://b-1/../p"],
    ["--role", "worker"],
])
def test_cli_bad_role_or_store_is_one_line_and_exit_2(
        argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("S3EXP_STORE", raising=False)
    try:
        code = main(["infra", "policy", *argv])
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "error" in err
