"""The Dockerfile runs the documented gunicorn command on the documented port (the image build is not tested:
no container engine runs here)."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path

from cds_hooks.ops.cli import build_parser
from cds_hooks.ops.launch import DEFAULT_PORT, gunicorn_args
from tests.docs import doc

REPO = Path(__file__).resolve().parent.parent


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", (REPO / "Dockerfile").read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            pairs.append((word.upper(), rest.strip()))
    return pairs


def _one(name: str) -> str:
    values = [rest for word, rest in _instructions() if word == name]
    assert len(values) == 1, f"expected one {name}, found {values}"
    return values[0]


def test_entrypoint_is_the_documented_gunicorn_command_on_the_exposed_port() -> None:
    entrypoint = json.loads(_one("ENTRYPOINT"))  # exec form: signals reach gunicorn itself
    assert entrypoint == ["gunicorn", *gunicorn_args("0.0.0.0", DEFAULT_PORT)]
    assert _one("EXPOSE") == str(DEFAULT_PORT)
    assert build_parser().parse_args(["serve", "--production"]).port == DEFAULT_PORT
    # The documented production command (docs/operations.md) is the same one on loopback.
    assert shlex.join(["gunicorn", *gunicorn_args("127.0.0.1", DEFAULT_PORT)]) in doc("operations.md")


def test_healthcheck_probes_liveness_with_python_on_the_same_port() -> None:
    healthcheck = _one("HEALTHCHECK")
    command = json.loads(healthcheck[healthcheck.index("CMD") + 3:])
    assert command[:2] == ["python", "-c"]
    compile(command[2], "<healthcheck>", "exec")  # valid Python, and it needs no curl
    assert f"http://127.0.0.1:{DEFAULT_PORT}/healthz" in command[2]


def test_multi_stage_and_not_root() -> None:
    stages = [rest for word, rest in _instructions() if word == "FROM"]
    assert len(stages) >= 2 and stages[0].endswith("AS build")
    assert any(word == "COPY" and rest.startswith("--from=build") for word, rest in _instructions())
    user = _one("USER")
    assert user not in ("root", "0")


def test_the_build_stage_copies_every_source_the_wheel_needs() -> None:
    """hatchling fails the build when a force-included directory is missing from the build context."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    wheel = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]
    needed = {*wheel.get("packages", []), *wheel.get("force-include", {})}
    copied = {rest.split()[0] for word, rest in _instructions() if word == "COPY" and not rest.startswith("--")}
    assert needed <= copied, needed - copied
