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

from cds_hooks.ops.cli import main
from cds_hooks.sandbox.fixtures import fixtures_dir, resolve_dates
from cds_hooks.service.hook import today_utc

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


def _start(server: str, host: str, port: int, env: dict[str, str], insecure: bool = False) -> subprocess.Popen[bytes]:
    """`lumbar-cds serve [--production]`, or the documented gunicorn command, listening on host:port."""
    if server != "serve":
        # Production never migrates at start-up: docs/operations.md's order is `db upgrade`, then gunicorn.
        upgrade = [sys.executable, "-m", "cds_hooks", "db", "upgrade"]
        subprocess.run(upgrade, env={**os.environ, **env}, check=True, capture_output=True)
    if server in ("serve", "production"):
        command = [sys.executable, "-m", "cds_hooks", "serve", "--host", host, "--port", str(port)]
        command += ["--insecure"] if insecure else []
        command += ["--production"] if server == "production" else []
        env = {**env, "LUMBAR_CDS_WORKERS": "2"}
    else:
        command = [str(GUNICORN), "-c", "python:cds_hooks.gunicorn_conf", "--workers", "2",
                   "--bind", f"{host}:{port}", "cds_hooks.app:create_app()"]
        env = {**env, "LUMBAR_CDS_INSECURE": "1"} if insecure else env
    return subprocess.Popen(command, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _get(url: str, proc: subprocess.Popen[bytes]) -> tuple[int, dict[str, str], bytes]:
    """GET once the server is up (HTTP errors are answers too)."""
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise
            time.sleep(0.2)


def _stop(proc: subprocess.Popen[bytes]) -> str:
    proc.terminate()
    return proc.communicate(timeout=10)[1].decode()


@pytest.mark.parametrize("server", ["serve", "gunicorn", "production"])
def test_server_answers_discovery_on_loopback(tmp_path: Path, server: str) -> None:
    """`lumbar-cds serve [--production]` and the documented gunicorn command serve the real app, with a warning."""
    port = _free_port()
    proc = _start(server, "127.0.0.1", port, {"LUMBAR_CDS_DATA_DIR": str(tmp_path / "data")})
    try:
        status, _, body = _get(f"http://127.0.0.1:{port}/cds-services", proc)
        assert status == 200
        # Loopback without authentication: a rebound name gets nothing (DNS rebinding).
        rebound = urllib.request.Request(f"http://127.0.0.1:{port}/cds-services", headers={"Host": "evil.example"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(rebound, timeout=5)
        assert refused.value.code == 400
        assert {s["hook"] for s in json.loads(body)["services"]} == {"order-select", "order-sign"}
        assert (tmp_path / "data" / "lumbar-cds.sqlite3").exists()
        # The sandbox page is on for the development server, off under the WSGI factory.
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/sandbox", timeout=5) as response:
                sandbox_status = response.status
        except urllib.error.HTTPError as exc:
            sandbox_status = exc.code
        assert sandbox_status == (200 if server == "serve" else 404)
    finally:
        stderr = _stop(proc)
    assert "WARNING: authentication is OFF" in stderr


@pytest.mark.parametrize("server", ["serve", "gunicorn", "production"])
def test_non_loopback_without_issuers_refuses_to_start(tmp_path: Path, server: str) -> None:
    proc = _start(server, "0.0.0.0", _free_port(), {"LUMBAR_CDS_DATA_DIR": str(tmp_path / "data")})
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode != 0
    assert "refusing to listen on 0.0.0.0 without authentication" in stderr.decode()


@pytest.mark.parametrize("server", ["serve", "gunicorn", "production"])
def test_non_loopback_starts_with_insecure_and_says_so(tmp_path: Path, server: str) -> None:
    port = _free_port()
    proc = _start(server, "0.0.0.0", port, {"LUMBAR_CDS_DATA_DIR": str(tmp_path / "data")}, insecure=True)
    try:
        assert _get(f"http://127.0.0.1:{port}/cds-services", proc)[0] == 200
        # Exposure accepted: callers on the network use the machine's name, so any Host is served.
        by_name = urllib.request.Request(f"http://127.0.0.1:{port}/cds-services", headers={"Host": "cds.example.org"})
        with urllib.request.urlopen(by_name, timeout=5) as response:
            assert response.status == 200
    finally:
        stderr = _stop(proc)
    assert "WARNING: listening on 0.0.0.0 WITHOUT authentication" in stderr


@pytest.mark.parametrize("server", ["serve", "gunicorn"])
def test_non_loopback_starts_when_issuers_are_configured(tmp_path: Path, server: str) -> None:
    (tmp_path / "jwks.json").write_text('{"keys": []}')
    config = tmp_path / "lumbar-cds.toml"
    config.write_text(
        'data_dir = "data"\npublic_base_url = "https://cds.example.org"\n'
        'fhir_allowlist = ["https://ehr.example.org/fhir/r4"]\n'
        '[[auth.issuers]]\niss = "https://ehr.example.org"\njwks = "jwks.json"\n'
    )
    port = _free_port()
    proc = _start(server, "0.0.0.0", port, {"LUMBAR_CDS_CONFIG": str(config)})
    try:
        assert _get(f"http://127.0.0.1:{port}/healthz", proc)[0] == 200  # probes need no token
        status, headers, body = _get(f"http://127.0.0.1:{port}/cds-services", proc)
        assert status == 401 and headers["WWW-Authenticate"] == "Bearer"
        assert json.loads(body)["issue"][0]["diagnostics"] == "Unauthorized"
    finally:
        stderr = _stop(proc)
    assert "authentication is OFF" not in stderr and "WITHOUT authentication" not in stderr
    assert "unauthorized reason=missing-header" in stderr
    assert (tmp_path / "data" / "lumbar-cds.sqlite3").exists()  # the file's relative data_dir
