"""The command agent's child in test_runs_faults.py: ``python _run_child.py DIR RUN_ID ATTEMPT``.

Writes its pid to ``DIR/child-<run_id>-<attempt>.pid``, waits until ``DIR/go-<attempt>``
exists, then writes a result object to ``$S3EXP_RESULT_FILE`` and exits 0.  A plain
script (no s3exp import) so that it starts fast and stands for any user program.
"""

import json
import os
import sys
import time
from pathlib import Path

directory, run_id, attempt = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
assert os.environ["S3EXP_RUN_ID"] == run_id and os.environ["S3EXP_ATTEMPT"] == str(attempt)
pid_file = directory / f"child-{run_id}-{attempt}.pid"
pid_file.with_suffix(".tmp").write_text(str(os.getpid()))
pid_file.with_suffix(".tmp").replace(pid_file)
deadline = time.monotonic() + 120
while not (directory / f"go-{attempt}").exists():
    if time.monotonic() > deadline:
        sys.exit("go file never appeared")
    time.sleep(0.02)
Path(os.environ["S3EXP_RESULT_FILE"]).write_text(json.dumps({"child_attempt": attempt,
                                                             "child_pid": os.getpid()}))
