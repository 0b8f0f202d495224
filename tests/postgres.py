"""A real PostgreSQL server for the tests: Debian's binaries, a temporary cluster on a free loopback port.

initdb and postgres refuse to run as root, so under root they run as the `postgres` system user
(created by the Debian package) in a directory it owns. Password authentication is on for TCP, so
the tests use URLs with a password, as production does.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import psycopg
import pytest

DEBIAN_ROOT = Path("/usr/lib/postgresql")  # one <major version>/bin per installed server
INSTALL_HINT = (
    "PostgreSQL is not installed, and the store tests need a real server: run "
    "`apt-get install -y postgresql` (./dev test does it on Debian)"
)
PASSWORD = "s3cret-pw-for-tests"


def _bin_dir() -> Path:
    found = [p.parent for p in DEBIAN_ROOT.glob("*/bin/initdb") if p.parent.parent.name.isdigit()]
    if not found:
        pytest.fail(INSTALL_HINT, pytrace=False)
    return max(found, key=lambda p: int(p.parent.name))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    def __init__(self) -> None:
        self.bin = _bin_dir()
        self.root = Path(tempfile.mkdtemp(prefix="lumbar-cds-pg-"))
        self.port = _free_port()
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self._as_user = ["runuser", "-u", "postgres", "--"]
        self.data = self.root / "data"
        self._counter = 0

    def _run(self, *command: str) -> None:
        result = subprocess.run([*self._as_user, *command], capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"{command[0]} failed: {result.stdout}\n{result.stderr}")

    def start(self) -> None:
        pwfile = self.root / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if self._as_user:
            shutil.chown(pwfile, "postgres")
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-E", "UTF8", "--locale=C",
                  "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}")
        options = f"-h 127.0.0.1 -p {self.port} -k {self.root} -c fsync=on -c synchronous_commit=on"
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"), "-w", "-t", "60",
                  "-o", options, "start")

    def stop(self) -> None:
        try:
            # immediate: no shutdown checkpoint, the cluster is thrown away anyway.
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new, empty database; its SQLAlchemy URL."""
        self._counter += 1
        name = f"lumbar_cds_test_{self._counter}"
        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", password=PASSWORD,
                             dbname="postgres", autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)
