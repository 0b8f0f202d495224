"""Files a user names on the command line: a missing, unreadable, empty or non-JSON file, or a directory,
is refused with one line saying which and why (`BadInput`; `ops/cli.py` prints it and exits with 2)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson


class BadInput(ValueError):
    """A file named on the command line cannot be used; the message says which and why."""


def read_json(name: str, what: str = "a JSON file") -> Any:
    path = Path(name)
    if path.is_dir():
        raise BadInput(f"{name} is a directory; give {what}")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise BadInput(f"{name}: no such file; give {what}") from None
    except OSError as exc:
        raise BadInput(f"{name} cannot be read: {exc.strerror or exc}") from None
    if not raw.strip():
        raise BadInput(f"{name} is empty; give {what}")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadInput(f"{name} is not valid JSON ({exc}); give {what}") from None
