"""gunicorn_conf and the CLI read LUMBAR_CDS_* variables with config's own parsers (one set of words, one error)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cds_hooks.ops.cli import main

# In a subprocess: importing gunicorn_conf names a metrics directory in os.environ and reads the variables.
ON_STARTING = """
import os, sys, types
from cds_hooks.ops import gunicorn_conf
print("workers", gunicorn_conf.workers)
server = types.SimpleNamespace(cfg=types.SimpleNamespace(bind=["0.0.0.0:8080"]))
for word in sys.argv[1:]:
    os.environ["LUMBAR_CDS_INSECURE"] = word
    try:
        gunicorn_conf.on_starting(server)
        print(word, "started")
    except RuntimeError as exc:
        print(word, "refused:", exc)
gunicorn_conf.on_exit(server)
"""


def _conf(env: dict[str, str], *words: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LUMBAR_CDS_")}
    environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return subprocess.run([sys.executable, "-c", ON_STARTING, *words], env={**environ, **env},
                          capture_output=True, text=True, timeout=60)


def test_gunicorn_conf_insecure_accepts_every_flag_word(tmp_path: Path) -> None:
    # gunicorn's start-up also checks the schema (one line instead of a traceback per worker): migrate first.
    subprocess.run([sys.executable, "-m", "cds_hooks", "db", "upgrade"], check=True, capture_output=True,
                   env={**os.environ, "LUMBAR_CDS_DATA_DIR": str(tmp_path)})
    result = _conf({"LUMBAR_CDS_DATA_DIR": str(tmp_path), "LUMBAR_CDS_WORKERS": "3"},
                   "1", "true", "yes", "on", "ON", "0", "off", "maybe")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "workers 3"
    assert lines[1:5] == [f"{w} started" for w in ("1", "true", "yes", "on")]
    assert lines[5] == "ON started"
    assert lines[6].startswith("0 refused: lumbar-cds: refusing to listen on 0.0.0.0")
    assert lines[7].startswith("off refused: lumbar-cds: refusing to listen")
    assert lines[8] == "maybe refused: lumbar-cds: LUMBAR_CDS_INSECURE must be 1 or 0 (true or false), not 'maybe'"
    assert result.stderr.count("WITHOUT authentication (LUMBAR_CDS_INSECURE=1)") == 5


def test_gunicorn_conf_refuses_a_number_that_is_not_one(tmp_path: Path) -> None:
    result = _conf({"LUMBAR_CDS_DATA_DIR": str(tmp_path), "LUMBAR_CDS_TIMEOUT": "30s"})
    assert result.returncode != 0
    assert "LUMBAR_CDS_TIMEOUT must be a whole number, not '30s'" in result.stderr


@pytest.mark.parametrize(("word", "expected"), [
    ("maybe", "error: LUMBAR_CDS_INSECURE must be 1 or 0 (true or false), not 'maybe'"),
    ("off", "error: refusing to listen on 0.0.0.0 without authentication"),
])
def test_serve_reads_lumbar_cds_insecure_like_gunicorn_conf(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], word: str, expected: str
) -> None:
    monkeypatch.setenv("LUMBAR_CDS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LUMBAR_CDS_INSECURE", word)
    assert main(["serve", "--host", "0.0.0.0", "--port", "1"]) == 2
    assert capsys.readouterr().err.startswith(expected)
