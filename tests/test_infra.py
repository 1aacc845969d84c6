"""infra/template.yaml: cfn-lint, the wiring of bucket, triggers and functions to the key
layout, and the Athena tables against what the library writes and `s3exp query` shows."""

from __future__ import annotations

import ast
import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import s3exp
from s3exp.bucket import keys
from s3exp.stores import FileStore
from s3exp.tables._query import VIEWS
from tests._cfn import REPO, TEMPLATE, load_template, render

BUCKET, PREFIX = "exp-bucket", "team/proj"
VALUES = {"BucketName": BUCKET, "Prefix": PREFIX, "AWS::Partition": "aws",
          "AWS::Region": "eu-west-1", "AWS::AccountId": "123456789012",
          "GlueDatabaseName": "s3exp", "AthenaWorkGroupName": "s3exp",
          "StagingExpirationDays": "30", "AthenaResultsExpirationDays": "7",
          "CompactSchedule": "rate(15 minutes)", "GlueDatabase": "s3exp",
          "CompactFunction.Arn": "arn:aws:lambda:eu-west-1:123456789012:function:compact",
          "CompactFunction": "compact", "CompactMemorySize": "2048",
          "CompactorPolicy": "arn:aws:iam::123456789012:policy/compactor",
          "ReaderPolicy": "arn:aws:iam::123456789012:policy/reader"}


@pytest.fixture(scope="module")
def resources() -> dict[str, Any]:
    res = load_template()["Resources"]
    assert isinstance(res, dict)
    return res


def _props(resources: dict[str, Any], logical_id: str) -> dict[str, Any]:
    props = render(resources[logical_id]["Properties"], VALUES)
    assert isinstance(props, dict)
    return props


# -- cfn-lint ----------------------------------------------------------------------------


def _cfn_lint(path: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "cfn-lint"
    assert exe.exists(), "cfn-lint is in the [dev] extra: pip install -e '.[dev]'"
    return subprocess.run([str(exe), str(path)], capture_output=True, text=True, timeout=240)


def test_cfn_lint_finds_no_errors() -> None:
    r = _cfn_lint(TEMPLATE)
    # Exit status is a bit mask: 2 errors, 4 warnings, 8 informational; 1 a crash.
    assert r.returncode & 3 == 0, r.stdout + r.stderr
    assert not [line for line in r.stdout.splitlines() if line[:1] == "E"], r.stdout


def test_cfn_lint_does_see_errors_in_this_template(tmp_path: Path) -> None:
    """The check above is live: the same template with an impossible timeout fails."""
    broken = tmp_path / "template.yaml"
    text = TEMPLATE.read_text()
    assert "      Timeout: 900\n" in text
    broken.write_text(text.replace("      Timeout: 900\n", "      Timeout: 99999\n"))
    r = _cfn_lint(broken)
    assert r.returncode & 2, r.stdout + r.stderr


# -- the bucket, its lifecycle and its trigger ------------------------------------------------


def test_bucket_is_private_encrypted_and_unversioned(resources: dict[str, Any]) -> None:
    bucket = _props(resources, "DataBucket")
    assert bucket["BucketName"] == BUCKET
    assert bucket.get("VersioningConfiguration", {}).get("Status") != "Enabled"
    rule = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
    block = bucket["PublicAccessBlockConfiguration"]
    assert block == {"BlockPublicAcls": True, "BlockPublicPolicy": True,
                     "IgnorePublicAcls": True, "RestrictPublicBuckets": True}


def test_lifecycle_expires_only_disposable_prefixes(resources: dict[str, Any]) -> None:
    rules = {r["Id"]: r for r in _props(resources, "DataBucket")["LifecycleConfiguration"]["Rules"]}
    assert rules["expire-staging-shards"]["Prefix"] == f"{PREFIX}/{keys.STAGING}"
    assert rules["expire-athena-results"]["Prefix"] == f"{PREFIX}/{keys.ATHENA_RESULTS}"
    state = ("spec", "control", "lease", "result", "error", "interrupt", "manifest",
             "pending_part", "status_rollup", "metrics_part", "results_part")
    samples = {kind: f"{PREFIX}/{glob.replace('*', 'x')}" for kind, glob in keys.globs().items()}
    for rule in rules.values():
        if "ExpirationInDays" not in rule:
            continue
        prefix = rule.get("Prefix", "")
        assert prefix, f"{rule['Id']} would expire the whole bucket"
        for kind in state:  # run state, specs and tables are never expired
            assert not samples[kind].startswith(prefix), (rule["Id"], kind)
    assert samples["shard"].startswith(rules["expire-staging-shards"]["Prefix"])


def test_staging_shards_trigger_the_compaction_function(resources: dict[str, Any]) -> None:
    config = _props(resources, "DataBucket")["NotificationConfiguration"]["LambdaConfigurations"]
    assert len(config) == 1
    (notify,) = config
    assert notify["Event"] == "s3:ObjectCreated:*"
    assert notify["Function"] == VALUES["CompactFunction.Arn"]
    rules = {r["Name"]: r["Value"] for r in notify["Filter"]["S3Key"]["Rules"]}
    shard = f"{PREFIX}/{keys.shard('exp', 'ds__m__r0', 1, 0)}"
    assert shard.startswith(rules["prefix"]) and shard.endswith(rules["suffix"])
    for other in (keys.lease("exp", "r"), keys.table_part("metrics", "exp", 1, "t", 0),
                  keys.pending_part("exp", "t", 0)):  # compaction's own output: no loop
        key = f"{PREFIX}/{other}"
        assert not (key.startswith(rules["prefix"]) and key.endswith(rules["suffix"])), other
    permission = _props(resources, "CompactFunctionS3Permission")
    assert permission["Principal"] == "s3.amazonaws.com"
    assert permission["Action"] == "lambda:InvokeFunction"
    assert permission["SourceArn"] == f"arn:aws:s3:::{BUCKET}"
    assert "CompactFunctionS3Permission" in _listed(resources["DataBucket"]["DependsOn"])


def _listed(x: Any) -> list[Any]:
    return x if isinstance(x, list) else [x]


def test_functions_schedule_url_and_store(resources: dict[str, Any]) -> None:
    template = load_template()
    env = render(template["Globals"]["Function"]["Environment"]["Variables"], VALUES)
    assert env["S3EXP_STORE"] == f"s3://{BUCKET}/{PREFIX}"
    compact = _props(resources, "CompactFunction")
    (event,) = compact["Events"].values()
    assert event["Type"] == "Schedule" and event["Properties"]["Schedule"].startswith("rate(")
    status = _props(resources, "StatusFunction")
    assert status["FunctionUrlConfig"]["AuthType"] == "AWS_IAM"
    for logical_id, props in (("CompactFunction", compact), ("StatusFunction", status)):
        assert props["PackageType"] == "Image"
        meta = resources[logical_id]["Metadata"]
        assert (TEMPLATE.parent / meta["DockerContext"] / meta["Dockerfile"]).resolve() \
            == REPO / "infra" / "Dockerfile"
        (command,) = props["ImageConfig"]["Command"]
        module, func = command.split(".")
        tree = ast.parse((REPO / "lambdas" / f"{module}.py").read_text())
        assert func in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}, command


# -- Athena ---------------------------------------------------------------------------------


def test_athena_workgroup_writes_under_the_project(resources: dict[str, Any]) -> None:
    config = _props(resources, "AthenaWorkGroup")["WorkGroupConfiguration"]
    assert config["EnforceWorkGroupConfiguration"] is True
    assert config["ResultConfiguration"]["OutputLocation"] == \
        f"s3://{BUCKET}/{PREFIX}/{keys.ATHENA_RESULTS}"


def glue_tables(resources: dict[str, Any]) -> dict[str, dict[str, Any]]:
    tables = {}
    for logical_id, res in resources.items():
        if res["Type"] == "AWS::Glue::Table":
            table = _props(resources, logical_id)["TableInput"]
            tables[table["Name"]] = table
    return tables


def test_glue_tables_project_the_experiment_partition_onto_the_key_layout(
        resources: dict[str, Any]) -> None:
    tables = glue_tables(resources)
    assert sorted(tables) == sorted(VIEWS)
    for name, table in tables.items():
        params = table["Parameters"]
        assert params["projection.enabled"] == "true"
        assert params["projection.experiment.type"] == "injected"
        assert params["storage.location.template"] == \
            f"s3://{BUCKET}/{PREFIX}/{keys.table_prefix(name, '${experiment}')}"
        assert table["StorageDescriptor"]["Location"] == f"s3://{BUCKET}/{PREFIX}/{name}/"
        assert table["PartitionKeys"] == [{"Name": "experiment", "Type": "string"}]
        assert "Parquet" in table["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"]


# DuckDB's DESCRIBE type, and Arrow's type in the Parquet files, as Glue/Hive types.
DUCKDB_TO_GLUE = {"VARCHAR": "string", "INTEGER": "int", "BIGINT": "bigint", "DOUBLE": "double",
                  "BOOLEAN": "boolean", "TIMESTAMP WITH TIME ZONE": "timestamp"}


def _arrow_to_glue(t: pa.DataType) -> str:
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_timestamp(t):
        assert t.tz == "UTC", t  # Athena's timestamp is an instant read as UTC
        return "timestamp"
    return {pa.string(): "string", pa.int32(): "int", pa.int64(): "bigint",
            pa.float64(): "double", pa.bool_(): "boolean"}[t]


SPEC = {
    "name": "infraExp", "runs_per_pair": 2,
    "definition": {
        "data_groups": {"tabular": ["iris", "wine"]},
        "model_groups": {"sgd": {"model": "SGD", "hype": {
            "lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-1},
            "depth": {"distribution": "int_uniform", "min": 1, "max": 4},
            "loss": {"values": ["hinge", "log_loss"]},
            "shuffle": {"value": True}}}},
        "applications": {"tabular": ["sgd"]},
    },
}


def _describe(store: FileStore, view: str) -> list[tuple[str, str]]:
    out = s3exp.query(store, f"DESCRIBE {view}").to_pylist()
    return [(r["column_name"], DUCKDB_TO_GLUE[r["column_type"]]) for r in out]


def _glue_columns(table: dict[str, Any]) -> list[tuple[str, str]]:
    cols = table["StorageDescriptor"]["Columns"] + table["PartitionKeys"]
    return [(c["Name"], c["Type"]) for c in cols]


def _check_views_match_glue(store: FileStore, tables: dict[str, dict[str, Any]]) -> None:
    # metrics: the same columns, in the same order, so SELECT * agrees too.
    assert _describe(store, "metrics") == _glue_columns(tables["metrics"])
    # results: the fixed columns, then the experiment's own param_* and metric_* columns,
    # which the Glue table reaches through params_json / metrics_json.
    described = _describe(store, "results")
    glue = _glue_columns(tables["results"])
    assert [c for c in described if c in glue] == glue
    extra = [name for name, _ in described if (name, _) not in glue]
    assert extra and all(n.startswith(("param_", "metric_")) for n in extra), extra


def test_glue_columns_match_the_duckdb_views_and_the_parquet_files(
        resources: dict[str, Any], tmp_path: Path) -> None:
    tables = glue_tables(resources)
    store = FileStore(tmp_path / "store")
    s3exp.submit(store, s3exp.parse_spec(SPEC))
    for run in s3exp.Worker(store, "infraExp", wait=False, handle_signals=False):
        with run:
            for step in range(3):
                run.log({"loss": 1.0 / (step + 1), "acc": step / 3}, step=step)
            run.complete({"val_acc": 0.9, "epochs": 3})

    _check_views_match_glue(store, tables)  # before compaction: staged shards, result records
    report = s3exp.compact(store, "infraExp")
    assert report.runs_compacted == 4
    _check_views_match_glue(store, tables)  # after: compacted parts
    counts = s3exp.query(store, "SELECT (SELECT count(*) FROM metrics) AS m, "
                                "(SELECT count(*) FROM results) AS r").to_pylist()[0]
    assert counts == {"m": 4 * 3 * 2, "r": 4}

    # What Athena reads: the published Parquet parts themselves.  Their columns are the
    # Glue data columns by name and type, and never the partition column.
    for name, table in tables.items():
        part_keys = [m.key for m in store.list(keys.table_prefix(name, "infraExp"))]
        assert part_keys, name
        data_columns = {c["Name"]: c["Type"] for c in table["StorageDescriptor"]["Columns"]}
        for key in part_keys:
            schema = pq.read_schema(io.BytesIO(store.get(key).data))
            assert "experiment" not in schema.names, key
            in_file = {f.name: _arrow_to_glue(f.type) for f in schema}
            assert {n: in_file.get(n) for n in data_columns} == data_columns, key
            if name == "metrics":
                assert list(in_file) == list(data_columns), key
