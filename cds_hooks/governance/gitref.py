"""`rules diff --git REF`: the rules directory as it was in a git commit, extracted to a temporary directory."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path


class GitRefError(Exception):
    """The rules could not be read from git."""


def _git(cwd: Path, *args: str) -> bytes:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=False, timeout=60)
    except FileNotFoundError:
        raise GitRefError("git is not installed") from None
    if done.returncode != 0:
        raise GitRefError(f"git {' '.join(args)}: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout


def _extract(archive: bytes, into: Path) -> None:
    """Only plain files and directories, each inside `into` (git archive writes nothing else for rules/)."""
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for member in tar.getmembers():
            target = (into / member.name).resolve()
            if not target.is_relative_to(into.resolve()):
                raise GitRefError(f"refusing {member.name!r} from the archive: outside the target directory")
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
            elif member.isfile():
                source = tar.extractfile(member)
                assert source is not None  # a regular file always has content
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(source.read())


def rules_at(rules_dir: Path, ref: str, into: Path) -> Path:
    """Extract `rules_dir` as committed at `ref` into `into`; returns the extracted rules directory."""
    if not ref or ref.startswith("-"):  # never let a ref be read as an option of git
        raise GitRefError(f"not a git revision: {ref!r}")
    rules_dir = rules_dir.resolve()
    if not rules_dir.is_dir():
        raise GitRefError(f"{rules_dir}: not a directory")
    top = Path(_git(rules_dir, "rev-parse", "--show-toplevel").decode().strip())
    relative = rules_dir.relative_to(top.resolve()).as_posix()
    archive = _git(top, "archive", "--format=tar", ref, "--", relative)
    _extract(archive, into)
    extracted = into / relative
    if not extracted.is_dir():
        raise GitRefError(f"{relative} does not exist at {ref}")
    return extracted
