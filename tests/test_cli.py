"""The lumbar-cds command: evaluate a fixture or request, and serve for real."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pytest

from cds_hooks.cli import main
from cds_hooks.fixtures import fixtures_dir, resolve_dates
from cds_hooks.service import today_utc

PREMATURE = fixtures_dir() / "premature-mri-3-weeks.json"


def test_evaluate_prints_cards_for_humans(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", str(PREMATURE)]) == 0
    out = capsys.readouterr().out
    assert "1 card(s)" in out
    assert "[WARNING] MRI lumbar spine without contrast" in out
    assert "rule: imaging-premature" in out
    assert "-> suggestion: Replace with physical-therapy referral" in out


def test_evaluate_json_for_a_bare_request(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    request = resolve_dates(orjson.loads(PREMATURE.read_bytes())["request"], today_utc())
    path = tmp_path / "request.json"
    path.write_bytes(orjson.dumps(request))
    assert main(["evaluate", str(path), "--json"]) == 0
    response = json.loads(capsys.readouterr().out)
    assert [c["source"]["topic"]["code"] for c in response["cards"]] == ["imaging-premature"]


def test_evaluate_reports_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    request = orjson.loads(PREMATURE.read_bytes())["request"]
    del request["prefetch"]["conditions"]
    path = tmp_path / "request.json"
    path.write_bytes(orjson.dumps(request))
    assert main(["evaluate", str(path)]) == 1
    assert "HTTP 412" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


GUNICORN = Path(sys.executable).with_name("gunicorn")


@pytest.mark.parametrize("server", ["serve", "gunicorn"])
def test_server_answers_discovery_on_loopback(tmp_path: Path, server: str) -> None:
    """`lumbar-cds serve` and the README's gunicorn command both serve the real app."""
    port = _free_port()
    env = {**os.environ, "LUMBAR_CDS_DATA_DIR": str(tmp_path / "data")}
    env.pop("LUMBAR_CDS_SANDBOX", None)
    command = (
        [sys.executable, "-m", "cds_hooks.cli", "serve", "--port", str(port)] if server == "serve"
        else [str(GUNICORN), "--workers", "2", "--bind", f"127.0.0.1:{port}", "cds_hooks.app:create_app()"]
    )
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/cds-services", timeout=2) as response:
                    body = json.load(response)
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
        assert {s["hook"] for s in body["services"]} == {"order-select", "order-sign"}
        assert (tmp_path / "data" / "lumbar-cds.sqlite3").exists()
        # The sandbox page is on for the development server, off under the WSGI factory.
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/sandbox", timeout=5) as response:
                sandbox_status = response.status
        except urllib.error.HTTPError as exc:
            sandbox_status = exc.code
        assert sandbox_status == (200 if server == "serve" else 404)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
