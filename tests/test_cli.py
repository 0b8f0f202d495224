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
from typing import Any

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
    assert "[WARNING] Lumbar MRI likely premature: 3 weeks of symptoms" in out
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


# --------------------------------------------------------------------------- the first hour


@pytest.mark.parametrize(("name", "content", "says"), [
    ("missing.json", None, "no such file"),
    ("empty.json", b"", "is empty"),
    ("blank.json", b"  \n", "is empty"),
    ("notes.json", b"MRI please", "is not valid JSON"),
    ("a-directory", "dir", "is a directory"),
])
def test_evaluate_refuses_a_bad_file_in_one_line(
    tmp_path: Path, name: str, content: bytes | str | None, says: str, capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / name
    if content == "dir":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    assert main(["evaluate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {path}") and says in err, err


def test_evaluate_prints_the_rating(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", str(PREMATURE)]) == 0
    assert "Appropriateness rating of ServiceRequest/mri-1: not-appropriate" in capsys.readouterr().out


def test_fixture_request_prints_the_request_with_dates_resolved(capsys: pytest.CaptureFixture[str]) -> None:

    assert main(["fixture", "request", "premature-mri-3-weeks"]) == 0
    out, err = capsys.readouterr()
    assert "{{today" not in out
    request = json.loads(out)
    assert request == resolve_dates(orjson.loads(PREMATURE.read_bytes())["request"], today_utc())
    assert "lumbar-pathway-order-select" in err
    assert main(["fixture", "request", str(PREMATURE)]) == 0  # a file works too
    assert json.loads(capsys.readouterr().out) == request
    assert main(["fixture", "request", "no-such-scenario"]) == 2
    assert "fixture list" in capsys.readouterr().err
    assert main(["fixture", "list"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == sorted(p.stem for p in fixtures_dir().glob("*.json"))


def _readme_block_with(text: str) -> str:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    blocks = readme.split("```sh\n")[1:]
    return next(b.split("```")[0] for b in blocks if text in b)


def test_the_readmes_fixture_curl_line_works_as_written(tmp_path: Path) -> None:
    """The README's `fixture request | curl` line, run by a shell against `lumbar-cds serve`, gets the card
    (only the program's path and the port are those of this test)."""
    import shutil

    curl = shutil.which("curl")
    assert curl, "curl is missing: ./dev test installs it (apt-get install -y curl)"
    line = _readme_block_with("fixture request").strip()
    assert line.startswith(".venv/bin/lumbar-cds fixture request") and ":8080/" in line
    port = _free_port()
    proc = _start("serve", "127.0.0.1", port, {"LUMBAR_CDS_DATA_DIR": str(tmp_path / "data")})
    try:
        _get(f"http://127.0.0.1:{port}/healthz", proc)
        command = line.replace(".venv/bin/lumbar-cds", str(Path(sys.executable).with_name("lumbar-cds")))
        result = subprocess.run(["bash", "-c", command.replace(":8080/", f":{port}/")],
                                capture_output=True, timeout=60, check=True)
    finally:
        _stop(proc)
    [card] = json.loads(result.stdout)["cards"]
    assert card["source"]["topic"]["code"] == "imaging-premature"
    assert "3 weeks of symptoms" in card["summary"]  # the dates were real: the onset was read
    assert "symptom onset date" not in card["detail"]


def _lines_until(stream: Any, text: str, timeout: float = 30) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = stream.readline().decode()
        if not line:
            break
        lines.append(line)
        if text in line:
            return lines
    raise AssertionError(f"{text!r} never printed; got {lines}")


def test_serve_announces_its_url_only_once_listening(tmp_path: Path) -> None:
    port = _free_port()
    proc = _start("serve", "127.0.0.1", port, {"LUMBAR_CDS_DATA_DIR": str(tmp_path / "data")})
    try:
        _lines_until(proc.stderr, f"CDS Hooks discovery at http://127.0.0.1:{port}/cds-services")
        # Not one retry: the moment the URL is printed, this server answers it.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/cds-services", timeout=5) as response:
            assert response.status == 200
    finally:
        _stop(proc)


def test_serve_says_when_the_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = _start("serve", "127.0.0.1", port, {"LUMBAR_CDS_DATA_DIR": str(tmp_path / "data")})
        _, err = proc.communicate(timeout=60)
    message = err.decode()
    assert proc.returncode == 2
    assert f"port {port} on 127.0.0.1 is already in use" in message and "--port" in message
    assert "discovery at" not in message and "Traceback" not in message


@pytest.mark.parametrize("server", ["production", "gunicorn"])
def test_production_on_an_unmigrated_database_says_what_to_do_in_one_line(tmp_path: Path, server: str) -> None:
    """No `db upgrade` yet: one instruction, no traceback, no worker started, no database file made."""
    data = tmp_path / "data"
    env = {**os.environ, "LUMBAR_CDS_DATA_DIR": str(data), "LUMBAR_CDS_WORKERS": "2"}
    command = ([sys.executable, "-m", "cds_hooks", "serve", "--production", "--port", str(_free_port())]
               if server == "production" else
               [str(GUNICORN), "-c", "python:cds_hooks.gunicorn_conf", "--workers", "2", "--bind",
                f"127.0.0.1:{_free_port()}", "cds_hooks.app:create_app()"])
    result = subprocess.run(command, env=env, capture_output=True, timeout=60)
    err = result.stderr.decode()
    assert result.returncode != 0
    assert "Traceback" not in err and "Booting worker" not in err, err
    assert [line for line in err.splitlines() if "lumbar-cds db upgrade" in line] == [
        next(line for line in err.splitlines() if "is not migrated" in line)]
    assert not data.exists()


def test_db_current_never_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    monkeypatch.delenv("LUMBAR_CDS_CONFIG", raising=False)
    monkeypatch.delenv("LUMBAR_CDS_DATABASE_URL", raising=False)
    monkeypatch.setenv("LUMBAR_CDS_DATA_DIR", str(data))
    assert main(["db", "current"]) == 1
    assert "revision none" in capsys.readouterr().out
    assert main(["report"]) == 2
    assert "lumbar-cds db upgrade" in capsys.readouterr().err
    assert not data.exists()  # neither made a directory nor a database
    assert main(["db", "upgrade"]) == 0
    database = data / "lumbar-cds.sqlite3"
    before = database.read_bytes()
    assert main(["db", "current"]) == 0 and main(["report"]) == 0
    assert database.read_bytes() == before
