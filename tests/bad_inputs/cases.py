"""The bad-input corpus: every way a user can get the input wrong, one entry each.

Each :class:`Case` is run through the real CLI as a subprocess by
``test_bad_inputs.py``, which asserts: the case's ``exit_status`` (2, input the user
must fix, unless the case says otherwise, such as 3 for a store that cannot be
reached), exactly one ``s3exp: error: ...`` line on stderr (no traceback) that contains
every one of ``needles``, nothing on stdout, and nothing written: the store (a
directory, or a SeaweedFS bucket), the working directory and the case's scratch
directory are byte for byte what they were before.

Adding a case is one entry in ``CASES`` (and, for a malformed spec, one file in
``specs/``).  Every new error path in s3exp should add one.

Placeholders, replaced in ``argv``, ``needles`` and ``env`` values before the run:

=============  =================================================================
``{store}``    the case's store URL (see ``store`` below)
``{specs}``    this corpus's ``specs/`` directory
``{examples}`` the repository's ``examples/`` directory
``{tmp}``      the case's scratch directory (snapshotted like the store)
``{file}``     an existing regular file in ``{tmp}``
``{endpoint}`` the S3 endpoint URL of ``s3*``, ``html-*`` and ``refused`` stores
``{bucket}``   the bucket of ``s3*`` stores
=============  =================================================================

``store`` kinds:

* ``dir``: a directory store ``{tmp}/store``; ``seeded`` puts testExp0 in it first.
* ``s3``: a fresh bucket on the suite's SeaweedFS server (signatures enforced), with the
  server's endpoint and credentials in the environment; ``seeded`` as above.
* ``s3-no-bucket``: the same server, but the bucket does not exist (and must not after).
* ``html-200``, ``html-404``: ``s3://bucket`` whose endpoint is a loopback web server
  answering every request with an HTML page; it must get no request after the first.
* ``refused``: ``s3://bucket`` whose endpoint is a loopback port where nothing listens
  (exit status 3: the store is unreachable).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["CASES", "Case", "StoreKind"]

StoreKind = Literal["dir", "s3", "s3-no-bucket", "html-200", "html-404", "refused"]
SEAWEED_KINDS = ("s3", "s3-no-bucket")
HTML_KINDS = ("html-200", "html-404")


@dataclass(frozen=True)
class Case:
    """One bad input.  ``id`` is ``<category>/<what>``, the test id in pytest's output."""

    id: str
    argv: tuple[str, ...]
    needles: tuple[str, ...]
    store: StoreKind = "dir"
    seeded: bool = True
    env: Mapping[str, str | None] = field(default_factory=dict)  # None unsets a variable
    exit_status: int = 2  # see `s3exp --help`

    @property
    def category(self) -> str:
        return self.id.split("/", 1)[0]

    @property
    def needs_seaweed(self) -> bool:
        return self.store in SEAWEED_KINDS


def case(id: str, *argv: str, needles: tuple[str, ...] | str, store: StoreKind = "dir",
         seeded: bool = True, env: Mapping[str, str | None] | None = None,
         exit_status: int = 2) -> Case:
    """A case whose command writes to ``{store}`` unless told otherwise."""
    return Case(id, tuple(argv), (needles,) if isinstance(needles, str) else needles, store, seeded,
                dict(env or {}), exit_status)


def spec(file: str, *needles: str, category: str = "spec", store: StoreKind = "dir") -> Case:
    """``s3exp submit specs/<file> --store {store}``; the id is the file's stem."""
    stem = file.rsplit(".", 1)[0]
    suffix = "" if file.endswith(".json") else f"-{file.rsplit('.', 1)[1]}"
    return case(f"{category}/{stem}{suffix}", "submit", f"{{specs}}/{file}", "--store", "{store}",
                needles=needles, store=store)


MG0 = "definition.model_groups.model0"
LR = f"{MG0}.hype.learning_rate"
NOT_S3 = "does not answer like an S3 server"
NO_SUCH = "no experiment 'nosuchExp' in"
LONG = "e" * 200


CASES: list[Case] = [
    # -- malformed specs: unparsable files --------------------------------------------
    spec("truncated.json", "truncated.json is not valid JSON", "line 3"),
    spec("single-quotes.json", "single-quotes.json is not valid JSON", "double quotes"),
    spec("duplicate-key.json", "duplicate key 'name'"),
    spec("latin1.json", "latin1.json", "is not UTF-8"),
    spec("nan.json", "NaN is not allowed"),
    spec("not-an-object.json", "must be a JSON object", "an array"),
    spec("bad-indentation.yaml", "bad-indentation.yaml is not valid YAML at line 6"),
    spec("duplicate-key.yaml", "duplicate key 'group0'", "line 6"),
    spec("python-tag.yaml", "is not valid YAML", "python/object"),
    spec("alias-bomb.yaml", "more than 250000 values"),
    spec("empty.yaml", "must be a JSON object", "null"),
    spec("inf.yaml", "parameters.x.max: ", "inf is not allowed"),
    case("spec/missing-file", "submit", "{specs}/no-such-spec.json", "--store", "{store}",
         needles=("no-such-spec.json", "does not exist")),
    case("spec/a-directory", "submit", "{specs}", "--store", "{store}", needles="is a directory"),
    # -- malformed specs: distributions -----------------------------------------------
    spec("min-gt-max.json", f"{LR}: ", "min (3.0) is greater than max (2.5)"),
    spec("log-uniform-values-min-zero.json", f"{MG0}.hype.wd: ", "needs min > 0 (got 0)"),
    spec("unknown-distribution.json", f"{LR}.distribution: ", "'log_uniform_values'"),
    spec("int-uniform-float-bounds.json", f"{MG0}.hype.layers: ", "integer 'min' and 'max'"),
    spec("empty-values.json", f"{MG0}.hype.act: ", "non-empty 'values'"),
    spec("normal-negative-sigma.json", f"{MG0}.hype.noise: ", "sigma must be > 0"),
    spec("min-is-a-string.json", f"{LR}.min: ", "a valid number"),
    spec("hype-not-a-mapping.json", f"{MG0}.hype: ", "dictionary"),
    spec("reserved-parameter-name.json", f"{MG0}.hype: ", "'run_id' is reserved"),
    # -- malformed specs: structure ---------------------------------------------------
    spec("applications-unknown-data-group.json", "definition.applications.group9: ",
         "unknown data group 'group9'"),
    spec("applications-unknown-model-group.json", "definition.applications.group1.1: ",
         "unknown model group 'model7'"),
    spec("empty-data-group.json", "definition.data_groups.group0: is empty"),
    spec("no-model-groups.json", "definition.model_groups: needs at least one model group"),
    spec("duplicate-dataset.json", "definition.data_groups.group1.2: ", "'dataUID3' is listed twice"),
    spec("data-groups-not-a-mapping.json", "definition.data_groups: ", "dictionary"),
    spec("both-shapes.json", "definition: give exactly one of"),
    spec("flat-empty-parameters.json", "parameters: is empty"),
    spec("flat-method-bayes.json", "method: ", "'grid' or 'random'"),
    # -- malformed specs: wrong values and types --------------------------------------
    spec("runs-per-pair-zero.json", "runs_per_pair: ", "greater than or equal to 1"),
    spec("runs-per-pair-negative.yaml", "runs_per_pair: ", "greater than or equal to 1"),
    spec("runs-per-pair-abc.json", "runs_per_pair: ", "valid integer"),
    spec("runs-per-pair-bool.json", "runs_per_pair: must be a number, not true"),
    spec("too-many-runs.json", "runs_per_pair: ", "9000000 runs (limit 1000000)"),
    spec("lease-seconds-zero.json", "lease_seconds: ", "greater than 0"),
    spec("max-attempts-zero.json", "max_attempts: ", "greater than or equal to 1"),
    spec("missing-name.json", "name: is required"),
    spec("name-not-a-string.json", "name: ", "valid string"),
    spec("unknown-top-level-field.json", "runs_per_pairs: unknown field"),
    spec("schema-version-2.json", "schema_version: ", "Input should be 1"),
    spec("conflicting-testExp0.json", "'testExp0' already exists with a different spec",
         "first difference at seed"),
    case("spec/show-a-bad-spec-file", "show", "{specs}/min-gt-max.json", "--store", "{store}",
         needles=(f"{LR}: ", "greater than max")),
    spec("min-gt-max.json", f"{LR}: ", "greater than max", category="spec-s3", store="s3"),
    spec("duplicate-key.yaml", "duplicate key 'group0'", category="spec-s3", store="s3"),

    # -- hostile names inside a spec ---------------------------------------------------
    spec("name-slash.json", "name: ", "'test/Exp0' contains a path separator", category="name"),
    spec("name-dotdot.json", "name: ", "contains '..'", category="name"),
    spec("name-leading-dot.json", "name: ", "starts with a dot", category="name"),
    spec("name-newline.json", "name: ", "'testExp0\\nrm -rf /'", "control character", category="name"),
    spec("name-escape-sequence.json", "name: ", "\\x1b[31m", "control character", category="name"),
    spec("name-over-128-bytes.json", "name: ", "longer than 128 bytes", category="name"),
    spec("name-double-underscore.json", "name: ", "contains '__'", category="name"),
    spec("dataset-dotdot.json", "definition.data_groups.group0.1: ", "'../dataUID1'", category="name"),
    spec("dataset-nul.json", "definition.data_groups.group0.0: ", "\\x00", "control character",
         category="name"),
    spec("dataset-double-underscore.json", "definition.data_groups.group0.0: ", "contains '__'",
         category="name"),
    spec("group-slash.json", "definition.data_groups.group/0: ", "path separator", category="name"),
    spec("model-slash.json", f"{MG0}.model: ", "'models/UID0' contains a path separator", category="name"),
    spec("model-over-128-bytes.json", f"{MG0}.model: ", "longer than 128 bytes", category="name"),
    spec("model-group-leading-dot.json", "definition.model_groups..model1: ", "starts with a dot",
         category="name"),
    # -- hostile names as the EXP argument ----------------------------------------------
    case("name/show-dotdot", "show", "../../etc", "--store", "{store}",
         needles="'../../etc': the name contains a path separator"),
    case("name/status-dotdot", "status", "../../etc", "--store", "{store}",
         needles="'../../etc': the name contains a path separator"),
    case("name/worker-dotdot", "worker", "../../etc", "--store", "{store}", "--", "true",
         needles="'../../etc': the name contains a path separator"),
    case("name/results-dotdot", "results", "../../etc", "--store", "{store}",
         needles="'../../etc': the name contains a path separator"),
    case("name/results-parquet-dotdot", "results", "../../etc", "--format", "parquet",
         "-o", "{tmp}/out.parquet", "--store", "{store}",
         needles="'../../etc': the name contains a path separator"),
    case("name/reset-dotdot", "reset", "../../etc", "--failed", "--store", "{store}",
         needles="'../../etc': the name contains a path separator"),
    case("name/cancel-dotdot", "cancel", "../../etc", "--store", "{store}",
         needles="'../../etc': the name contains a path separator"),
    case("name/compact-dotdot", "compact", "../../etc", "--store", "{store}",
         needles="'../../etc': the name contains a path separator"),
    case("name/query-experiment-dotdot", "query", "SELECT 1", "--experiment", "../../etc",
         "--store", "{store}", needles="'../../etc': the name contains a path separator"),
    case("name/pause-leading-dot", "pause", ".hidden", "--store", "{store}",
         needles="'.hidden': the name starts with a dot"),
    case("name/resume-double-underscore", "resume", "a__b", "--store", "{store}",
         needles="'a__b': the name contains '__'"),
    case("name/status-newline", "status", "testExp0\nx", "--store", "{store}",
         needles=("'testExp0\\nx'", "control character")),
    case("name/worker-escape-sequence", "worker", "a\x1b[2Jb", "--store", "{store}", "--", "true",
         needles=("'a\\x1b[2Jb'", "control character")),
    case("name/worker-id-dotdot", "worker", "testExp0", "--worker-id", "../evil", "--store", "{store}",
         "--", "true", needles="invalid worker id '../evil': contains a path separator"),
    case("name/status-over-128-bytes", "status", LONG, "--store", "{store}",
         needles="longer than 128 bytes"),
    case("name/status-dotdot-s3", "status", "../../etc", "--store", "{store}", store="s3",
         needles="'../../etc': the name contains a path separator"),
    case("name/cancel-dotdot-s3", "cancel", "../../etc", "--store", "{store}", store="s3",
         needles="'../../etc': the name contains a path separator"),
    case("name/results-leading-dot-s3", "results", ".hidden", "--store", "{store}", store="s3",
         needles="'.hidden': the name starts with a dot"),

    # -- wrong store URLs ----------------------------------------------------------------
    case("url/s3-no-bucket", "submit", "{examples}/grouped.json", "--store", "s3://",
         needles="invalid S3 bucket name '' in store URL 's3://'"),
    case("url/gs-scheme", "submit", "{examples}/grouped.json", "--store", "gs://x",
         needles="unsupported store URL scheme 'gs'"),
    case("url/ftp-scheme", "list", "--store", "ftp://x", needles="unsupported store URL scheme 'ftp'"),
    case("url/bad-bucket-name", "submit", "{examples}/grouped.json", "--store", "s3://Bad_Bucket!",
         needles="invalid S3 bucket name 'Bad_Bucket!'"),
    case("url/prefix-dotdot", "submit", "{examples}/grouped.json", "--store", "s3://bucket/../x",
         needles="invalid prefix segment '..'"),
    case("url/prefix-hidden", "status", "testExp0", "--store", "s3://bucket/ok/.hidden",
         needles="invalid prefix segment '.hidden'"),
    case("url/query-string", "list", "--store", "s3://bucket?versionId=1",
         needles="must not have a query or fragment"),
    case("url/file-relative", "submit", "{examples}/grouped.json", "--store", "file://relative",
         needles="'file://relative' names a host"),
    case("url/file-without-slashes", "submit", "{examples}/grouped.json", "--store", "file:relative",
         needles="'file:relative' is missing '//'"),
    case("url/s3-without-slashes", "submit", "{examples}/grouped.json", "--store", "s3:bucket",
         needles="'s3:bucket' is missing '//'"),
    case("url/empty", "submit", "{examples}/grouped.json", "--store", "", needles="store URL is empty"),
    case("url/control-character", "list", "--store", "{tmp}/a\nb", needles="contains control characters"),
    case("url/store-is-a-file", "submit", "{examples}/grouped.json", "--store", "{file}",
         needles="exists and is not a directory"),
    case("url/store-under-a-file", "submit", "{examples}/grouped.json", "--store", "{file}/store",
         needles=("cannot create store directory", "Not a directory")),
    case("url/env-store-gs", "submit", "{examples}/grouped.json", env={"S3EXP_STORE": "gs://x"},
         needles="unsupported store URL scheme 'gs'"),
    case("url/endpoint-no-scheme", "submit", "{examples}/grouped.json", "--store", "s3://bucket",
         "--endpoint-url", "localhost:9000", needles="invalid endpoint URL 'localhost:9000'"),
    case("url/env-endpoint-no-scheme", "list", "--store", "s3://bucket",
         env={"AWS_ENDPOINT_URL": "localhost:9000"}, needles="invalid endpoint URL 'localhost:9000'"),
    case("url/env-endpoint-ftp", "list", "--store", "s3://bucket",
         env={"AWS_ENDPOINT_URL_S3": "ftp://x"}, needles="invalid endpoint URL 'ftp://x'"),
    case("url/bad-region", "list", "--store", "s3://bucket",
         env={"AWS_DEFAULT_REGION": "bad region!"}, needles=("invalid AWS region", "bad region!")),

    # -- missing or wrong credentials, missing bucket (real SeaweedFS) --------------------
    case("creds/missing", "submit", "{examples}/flat_grid.json", "--store", "{store}", store="s3",
         env={"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None},
         needles="no AWS credentials found"),
    case("creds/wrong-secret", "submit", "{examples}/flat_grid.json", "--store", "{store}", store="s3",
         env={"AWS_SECRET_ACCESS_KEY": "not-the-secret"},
         needles=("S3 refused the credentials", "SignatureDoesNotMatch")),
    case("creds/wrong-access-key", "list", "--store", "{store}", store="s3",
         env={"AWS_ACCESS_KEY_ID": "nobody"}, needles="S3 refused the credentials"),
    case("creds/wrong-secret-worker", "worker", "testExp0", "--store", "{store}", "--", "true",
         store="s3", env={"AWS_SECRET_ACCESS_KEY": "not-the-secret"},
         needles="S3 refused the credentials"),
    case("creds/missing-bucket-submit", "submit", "{examples}/grouped.json", "--store", "{store}",
         store="s3-no-bucket", needles="bucket '{bucket}' does not exist"),
    case("creds/missing-bucket-status", "status", "testExp0", "--store", "{store}",
         store="s3-no-bucket", needles="bucket '{bucket}' does not exist"),
    case("creds/missing-bucket-cancel", "cancel", "testExp0", "--store", "{store}",
         store="s3-no-bucket", needles="bucket '{bucket}' does not exist"),

    # -- an endpoint that is not S3, and one where nothing listens -------------------------
    case("endpoint/html-200-submit", "submit", "{examples}/grouped.json", "--store", "{store}",
         store="html-200", needles=(NOT_S3, "{endpoint}", "HTTP 200")),
    case("endpoint/html-200-list", "list", "--store", "{store}", store="html-200",
         needles=(NOT_S3, "ListObjectsV2")),
    case("endpoint/html-200-status", "status", "testExp0", "--store", "{store}", store="html-200",
         needles=(NOT_S3, "GetObject")),
    case("endpoint/html-404-submit", "submit", "{examples}/grouped.json", "--store", "{store}",
         store="html-404", needles=(NOT_S3, "HTTP 404")),
    case("endpoint/html-404-show", "show", "testExp0", "--store", "{store}", store="html-404",
         needles=(NOT_S3, "HTTP 404")),
    # Not the user's input to fix but a store that cannot be reached: exit status 3.
    case("endpoint/refused-submit", "submit", "{examples}/grouped.json", "--store", "{store}",
         store="refused", needles=("cannot reach S3 endpoint {endpoint}",), exit_status=3),
    case("endpoint/refused-worker", "worker", "testExp0", "--store", "{store}", "--", "true",
         store="refused", needles=("cannot reach S3 endpoint {endpoint}",), exit_status=3),

    # -- bad command-line values ------------------------------------------------------------
    case("cli/processes-0", "worker", "testExp0", "--processes", "0", "--store", "{store}", "--", "true",
         needles="--processes: must be at least 1, not 0"),
    case("cli/processes-abc", "worker", "testExp0", "--processes", "abc", "--store", "{store}",
         "--", "true", needles="--processes: invalid int value: 'abc'"),
    case("cli/max-runs-negative", "worker", "testExp0", "--max-runs", "-1", "--store", "{store}",
         "--", "true", needles="--max-runs: must be at least 1, not -1"),
    case("cli/max-runs-0", "worker", "testExp0", "--max-runs", "0", "--store", "{store}",
         "--", "true", needles="--max-runs: must be at least 1, not 0"),
    case("cli/grace-negative", "worker", "testExp0", "--grace", "-1", "--store", "{store}",
         "--", "true", needles="--grace: must be a finite number >= 0"),
    case("cli/demo-processes-0", "demo", "--processes", "0", "--store", "{store}", seeded=False,
         needles="--processes: must be at least 1, not 0"),
    case("cli/template-unknown-field", "worker", "testExp0", "--store", "{store}",
         "--", "echo", "{nosuchparam}", needles="command template field {nosuchparam} is not a"),
    case("cli/template-empty-field", "worker", "testExp0", "--store", "{store}",
         "--", "echo", "--lr={}", needles="command template field {} is not a"),
    case("cli/template-unknown-field-fan-out", "worker", "testExp0", "--processes", "2",
         "--store", "{store}", "--", "echo", "{nosuchparam}",
         needles="command template field {nosuchparam} is not a"),
    case("cli/worker-no-command", "worker", "testExp0", "--store", "{store}", needles="no command given"),
    case("cli/unknown-experiment-show", "show", "nosuchExp", "--store", "{store}", needles=NO_SUCH),
    case("cli/unknown-experiment-status", "status", "nosuchExp", "--store", "{store}", needles=NO_SUCH),
    case("cli/unknown-experiment-worker", "worker", "nosuchExp", "--store", "{store}", "--", "true",
         needles=NO_SUCH),
    case("cli/unknown-experiment-worker-fan-out", "worker", "nosuchExp", "--processes", "3",
         "--store", "{store}", "--", "true", needles=NO_SUCH),
    case("cli/unknown-experiment-results", "results", "nosuchExp", "--store", "{store}", needles=NO_SUCH),
    case("cli/unknown-experiment-s3", "status", "nosuchExp", "--store", "{store}", store="s3",
         needles=NO_SUCH),
    case("cli/reset-without-selection", "reset", "testExp0", "--store", "{store}",
         needles="say which runs to reset"),
    case("cli/reset-unknown-run", "reset", "testExp0", "--run", "nosuchRun", "--store", "{store}",
         needles="experiment 'testExp0' has no run 'nosuchRun'"),
    case("cli/query-syntax-error", "query", "SELEC 1", "--store", "{store}",
         needles=("query failed", "SELEC")),
    case("cli/submit-without-spec", "submit", "--store", "{store}",
         needles="the following arguments are required: spec"),
    case("cli/unknown-command", "frobnicate", needles="invalid choice: 'frobnicate'"),
    case("cli/command-line-after-status", "status", "testExp0", "--store", "{store}", "--", "true",
         needles=("s3exp status: error: s3exp status takes no command line after '--'",
                  "only s3exp worker")),
    case("cli/command-line-after-infra-policy", "infra", "policy", "--role", "worker",
         "--store", "s3://bucket", "--", "x",
         needles="s3exp infra policy: error: s3exp infra policy takes no command line after '--'"),
    case("cli/bare-double-dash-after-submit", "submit", "{examples}/grouped.json",
         "--store", "{store}", "--", needles="s3exp submit takes no command line after '--'"),
    case("cli/verbose-and-quiet", "-v", "-q", "list", "--store", "{store}",
         needles="argument -q/--quiet: not allowed with argument -v/--verbose"),
    case("cli/serve-port-out-of-range", "serve", "--store", "{store}", "--port", "70000",
         needles="--port: a port is 0 to 65535, not 70000"),
    case("cli/dev-server-port-negative", "dev-server", "--dir", "{tmp}/dev", "--port", "-1",
         needles="--port: a port is 0 to 65535, not -1"),
    case("cli/infra-policy-unknown-role", "infra", "policy", "--role", "nosuch", "--store", "s3://bucket",
         needles="argument --role: invalid choice: 'nosuch'"),
    case("url/infra-policy-not-s3", "infra", "policy", "--role", "worker", "--store", "{store}",
         needles="IAM policies are for S3 stores"),
    case("url/infra-policy-bad-bucket", "infra", "policy", "--role", "worker", "--store", "s3://Bad_Bucket!",
         needles="invalid S3 bucket name 'Bad_Bucket!'"),
    case("url/serve-gs", "serve", "--store", "gs://x", "--port", "0",
         needles="unsupported store URL scheme 'gs'"),
    case("cli/results-output-missing-dir", "results", "testExp0", "--format", "csv",
         "-o", "{tmp}/no-such-dir/out.csv", "--store", "{store}",
         needles="directory '{tmp}/no-such-dir' does not exist"),
    case("cli/results-output-is-a-directory", "results", "testExp0", "--format", "parquet",
         "-o", "{tmp}", "--store", "{store}", needles="output '{tmp}' is a directory"),
    case("cli/results-unknown-format", "results", "testExp0", "--format", "xml", "--store", "{store}",
         needles="argument --format: invalid choice: 'xml'"),
]


def _check_unique() -> None:
    seen: set[str] = set()
    for c in CASES:
        if c.id in seen:
            raise AssertionError(f"duplicate bad-input case id {c.id!r}")
        seen.add(c.id)


_check_unique()
