"""Bulk Data input: NDJSON files (plain or gzip), directories of them, and Bulk Data manifests.

A file holds one resource type or many; its type comes from the manifest or from its name
(`Condition.ndjson`, `Condition.002.ndjson.gz`, `1.Condition.ndjson`), else each line says.
Lines are read as bytes and never parsed here: parsing happens once, per patient, in the judge.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import unquote, urlsplit

import orjson

SUFFIXES = (".ndjson", ".ndjson.gz", ".jsonl", ".jsonl.gz")
_TYPE_NAME = re.compile(r"[A-Z][A-Za-z]{2,63}")  # fullmatch
GZIP_MAGIC = b"\x1f\x8b"


class SourceError(ValueError):
    """The input cannot be read as Bulk Data; the message says which file and why."""


@dataclass(frozen=True)
class InputFile:
    path: Path
    resource_type: str | None  # None: several types, or unknown; each line says
    size: int = 0

    @property
    def gzipped(self) -> bool:
        return self.path.name.endswith(".gz")


@dataclass
class BulkInput:
    """What to read: output files, and what the manifest said about the export."""

    files: list[InputFile]
    transaction_time: str | None = None
    error_files: list[InputFile] = field(default_factory=list)
    remote: list[tuple[str | None, str]] = field(default_factory=list)  # (type, url) still to download
    requires_token: bool = False

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


def type_from_name(name: str) -> str | None:
    """`Condition.ndjson` → Condition; `1.Observation.003.ndjson.gz` → Observation; else None."""
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    for part in re.split(r"[.\-_]", name):
        if _TYPE_NAME.fullmatch(part):
            return part
    return None


def _input(path: Path, resource_type: str | None) -> InputFile:
    return InputFile(path, resource_type or type_from_name(path.name), path.stat().st_size)


def discover(source: Path) -> BulkInput:
    """The files of a directory (or its manifest.json), or of a manifest file."""
    if source.is_dir():
        manifest = source / "manifest.json"
        if manifest.is_file():
            return read_manifest(manifest)
        files = sorted(p for p in source.rglob("*") if p.is_file() and p.name.endswith(SUFFIXES))
        if not files:
            raise SourceError(f"{source}: no *.ndjson or *.ndjson.gz files")
        return BulkInput([_input(p, None) for p in files])
    if source.is_file():
        if source.name.endswith(SUFFIXES):
            return BulkInput([_input(source, None)])
        return read_manifest(source)
    raise SourceError(f"{source}: no such file or directory")


def read_manifest(path: Path) -> BulkInput:
    """A Bulk Data manifest: `output` (and `error`) entries with `type` and `url`. Relative and
    file: URLs are local files; http(s) URLs are left in `remote` for the Bulk client."""
    try:
        doc = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise SourceError(f"{path}: not a readable Bulk Data manifest ({type(exc).__name__})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("output"), list):
        raise SourceError(f"{path}: a Bulk Data manifest needs an `output` array")
    found = BulkInput([], transaction_time=_text(doc.get("transactionTime")),
                      requires_token=doc.get("requiresAccessToken") is True)
    for key, target in (("output", found.files), ("error", found.error_files)):
        for entry in doc.get(key) or ():
            if not isinstance(entry, dict) or not isinstance(entry.get("url"), str):
                raise SourceError(f"{path}: every `{key}` entry needs a `url`")
            rtype = _text(entry.get("type"))
            local = local_path(entry["url"], path.parent)
            if local is None:
                if key == "output":
                    found.remote.append((rtype, entry["url"]))
                continue
            if not local.is_file():
                raise SourceError(f"{path}: {entry['url']} is not a file")
            target.append(_input(local, rtype))
    return found


def local_path(url: str, base: Path) -> Path | None:
    """A manifest URL as a local path (relative or file:), or None for http(s)."""
    parts = urlsplit(url)
    if parts.scheme in ("http", "https"):
        return None
    if parts.scheme == "file":
        return Path(unquote(parts.path))
    if parts.scheme:
        raise SourceError(f"{url}: only relative paths, file: and http(s) URLs can be read")
    return base / url


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _open(path: Path) -> BinaryIO:
    with path.open("rb") as probe:
        magic = probe.read(2)
    if magic == GZIP_MAGIC:
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return path.open("rb")


def line_blocks(path: Path, start: int = 0, end: int | None = None, block: int = 1 << 20) -> Iterator[list[bytes]]:
    """The non-blank lines of a file, stripped, a list per block read (a line at a time costs a seek
    position and a generator step per line). With `end`, of a plain file, only the lines that start in
    [start, end): chunks of one file split at any byte offsets read every line exactly once. Without it
    the whole file, plain or gzip. Memory holds one block and one line."""
    with (_open(path) if end is None else path.open("rb")) as handle:
        if start > 0:
            handle.seek(start - 1)
            handle.readline()  # finish the line under way at start-1 (it belongs to the chunk before)
        at, tail = handle.tell(), b""
        while end is None or at < end:
            data = handle.read(block if end is None else min(block, end - at))
            if not data:
                break
            at += len(data)
            *whole, tail = (tail + data).split(b"\n")
            yield [kept for line in whole if (kept := line.strip())]
        if tail and (tail := (tail + handle.readline()).strip()):  # the last line, or one running past `end`
            yield [tail]


def chunks(files: list[InputFile], target: int) -> list[tuple[InputFile, int, int]]:
    """(file, start, end) pieces of about `target` bytes; a gzip file is one piece."""
    out = []
    for f in files:
        if f.gzipped or f.size <= target:
            out.append((f, 0, max(f.size, 1)))
            continue
        for start in range(0, f.size, target):
            out.append((f, start, min(start + target, f.size)))
    return out


def read_piece(f: InputFile, start: int, end: int) -> Iterator[list[bytes]]:
    """The piece's lines, in blocks (`line_blocks`)."""
    if f.gzipped or (start == 0 and end >= f.size):
        return line_blocks(f.path)
    return line_blocks(f.path, start, end)
