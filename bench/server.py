"""The production server on loopback for the benchmarks: gunicorn with `cds_hooks.ops.gunicorn_conf`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from cds_hooks.ops.launch import gunicorn_args


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Gunicorn:
    """One gunicorn master and its workers; authentication is off (no issuers) on loopback."""

    def __init__(self, data_dir: Path, port: int, env: dict[str, str] | None = None) -> None:
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log = data_dir / "gunicorn.log"
        self.env = {**os.environ, "LUMBAR_CDS_DATA_DIR": str(data_dir), **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> None:
        # As in production: bring the database to the current schema, then start gunicorn.
        upgrade = [sys.executable, "-m", "cds_hooks", "db", "upgrade"]
        subprocess.run(upgrade, env=self.env, check=True, capture_output=True)
        command = [sys.executable, "-m", "gunicorn", *gunicorn_args("127.0.0.1", self.port)]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(command, env=self.env, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not become ready; see {self.log}")
            time.sleep(0.2)

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.base + "/readyz", timeout=2) as response:
                return response.status == 200
        except (OSError, urllib.error.HTTPError):
            return False

    def worker_pids(self) -> list[int]:
        assert self.proc is not None
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        return [int(pid) for pid in children]

    def stop(self) -> int:
        """SIGTERM the master (graceful: in-flight requests finish) and wait for it."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)
