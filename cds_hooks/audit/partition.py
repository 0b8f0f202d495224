"""Group a Bulk export's resources by patient on disk, with bounded memory.

Each line goes to partition `crc32(patient id) % n` as `<patient id>\\t<line>`, in the routing process's
own file for that partition (`PartitionFiles`). Which patient a line belongs to is found without parsing
it when it holds exactly one distinct `Patient/<id>` reference (the usual case); otherwise it is parsed
once and its `subject` or `patient` decides. Resources of no patient (Medication, Practitioner,
Organization, Location, PractitionerRole) are kept apart, reduced to what the audit reads, in a small
catalogue shared by every partition. A line the prefetch can never hold (`Sieve`: most of a chart's vital
signs) is counted by type and goes nowhere.
"""

from __future__ import annotations

import re
import resource
import zlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from cds_hooks.audit.ndjson import InputFile, line_blocks, read_piece
from cds_hooks.audit.sieve import Sieve
from cds_hooks.audit.tally import Tally
from cds_hooks.fhir.resources import referenced_id

# A JSON string that is a Patient reference, relative or absolute, optionally versioned.
_PATIENT_REF = re.compile(rb'"(?:[^"\\]*/)?Patient/([A-Za-z0-9\-.]{1,64})(?:/_history/[^"\\]*)?"')
CATALOGUE_TYPES = frozenset({"Medication", "Practitioner", "PractitionerRole", "Organization", "Location"})
SEPARATOR = b"\t"  # FHIR ids never hold a tab
FLUSH_LINES = 20_000  # lines routed between writes: about 10 MB held per worker
MAX_OPEN = 4096  # partition files one process holds open at once, at most (and half its limit)
_ID_RUN = re.compile(rb"[A-Za-z0-9\-.]*")
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")  # FHIR R4's id type
_FILE = "part-{partition:05d}-{tag}.ndjson"  # a partition's file from one routing process
_SLASH = ord("/")
_QUOTE = ord('"')


@dataclass
class ScanStats:
    lines: int = 0
    bytes: int = 0
    patients: int = 0  # Patient resources seen
    unreadable: int = 0  # lines that are not a JSON object
    unattributed: int = 0  # lines of no patient and no catalogue type
    unasked: Counter[str] = field(default_factory=Counter)  # resource type → lines the `Sieve` passed over
    catalogue: dict[str, dict[str, Any]] = field(default_factory=dict)  # "Type/id" → resource

    def merge(self, other: ScanStats) -> None:
        self.lines += other.lines
        self.bytes += other.bytes
        self.patients += other.patients
        self.unreadable += other.unreadable
        self.unattributed += other.unattributed
        self.unasked.update(other.unasked)
        self.catalogue.update(other.catalogue)

    def count_into(self, tally: Tally) -> None:
        """The lines routing read but no patient's judge will: unreadable, of no patient (nor a shared
        resource), and passed over by the sieve."""
        tally.add("data", "unreadable", n=self.unreadable)
        tally.add("data", "unattributed", n=self.unattributed)
        for rtype, n in sorted(self.unasked.items()):
            tally.add("data", "unasked", rtype, n=n)


def partition_of(patient_id: bytes, partitions: int) -> int:
    return zlib.crc32(patient_id) % partitions


def owner(resource: dict[str, Any]) -> str | None:
    """The patient a parsed resource belongs to, or None. Only a FHIR id names one, as on the unparsed
    path (`_PATIENT_REF`): an id holding a tab or a line end would break the partition's line format."""
    if resource.get("resourceType") == "Patient":
        rid = resource.get("id")
        return rid if isinstance(rid, str) and _FHIR_ID.fullmatch(rid) else None
    for key in ("subject", "patient", "beneficiary"):
        value = resource.get(key)
        # The live reader's reading of a Patient reference (relative, absolute or versioned).
        pid = referenced_id(value.get("reference") if isinstance(value, dict) else value, "Patient")
        if pid:
            return pid if _FHIR_ID.fullmatch(pid) else None
    return None


def patient_refs(line: bytes) -> set[bytes]:
    """The distinct ids `_PATIENT_REF` finds in a line. Most lines name `Patient/` once (their subject):
    for them the one candidate is checked directly, as the expression would (about three times faster
    than running it); a line naming it more than once is left to the expression itself."""
    at = line.find(b"Patient/")
    if at < 0:
        return set()
    if line.find(b"Patient/", at + 8) >= 0:
        return set(_PATIENT_REF.findall(line))
    # The expression's string opens at the last quote before `Patient/`, with no backslash in between,
    # and `Patient/` follows it or a slash. Usually the quote is right before it (`"Patient/x"`).
    if at == 0 or line[at - 1] != _QUOTE:
        start = line.rfind(b'"', 0, at)
        if start < 0 or line[at - 1] != _SLASH or line.find(b"\\", start, at) >= 0:
            return set()
    # It closes at the first quote after the id (and an optional `/_history/...`), again with no
    # backslash before it.
    quote = line.find(b'"', at + 8)
    if quote < 0 or line.find(b"\\", at + 8, quote) >= 0:
        return set()
    end = _ID_RUN.match(line, at + 8, quote).end()  # type: ignore[union-attr]
    if not 1 <= end - at - 8 <= 64 or not (end == quote or line.startswith(b"/_history/", end)):
        return set()
    return {line[at + 8:end]}


def route(line: bytes, resource_type: str | None) -> tuple[str | None, dict[str, Any] | None]:
    """(patient id or None, the parsed resource if it had to be parsed). Raises ValueError for a
    line that is not a JSON object."""
    pid, resource = _route(line, resource_type)
    return (None if pid is None else pid.decode()), resource


def _route(line: bytes, resource_type: str | None) -> tuple[bytes | None, dict[str, Any] | None]:
    if resource_type not in ("Patient", None) or b'"Patient"' not in line:
        refs = patient_refs(line)
        if len(refs) == 1:
            return refs.pop(), None
        if not refs and resource_type in CATALOGUE_TYPES:
            pass  # parsed below, for the catalogue
        elif not refs and resource_type is not None:
            return None, None
    try:
        resource = orjson.loads(line)
    except orjson.JSONDecodeError:
        raise ValueError("not JSON") from None
    if not isinstance(resource, dict):
        raise ValueError("not a JSON object")
    pid = owner(resource)
    return (None if pid is None else pid.encode()), resource


def open_budget() -> int:
    """How many partition files a process may hold open: half its open-file limit (the rest is for
    everything else), at most MAX_OPEN; 512 under the usual limit of 1,024."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return MAX_OPEN if soft == resource.RLIM_INFINITY else max(1, min(soft // 2, MAX_OPEN))


class PartitionFiles:
    """One process's partition files in `out_dir`, `part-<p>-<tag>.ndjson`, appended to by every piece it
    routes: each is created once, not once per piece (1,050 files for the 10,000-patient benchmark became
    30 per worker). At most `max_open` are open at once, the least recently written closed first, so an
    audit of thousands of partitions never runs out of open files."""

    def __init__(self, out_dir: Path, tag: str, max_open: int | None = None) -> None:
        self.out_dir, self.tag = out_dir, tag
        self.max_open = open_budget() if max_open is None else max_open
        self.handles: dict[int, BinaryIO] = {}  # least recently written first

    def write(self, partition: int, data: bytes) -> None:
        handle = self.handles.pop(partition, None)
        if handle is None:
            if len(self.handles) >= self.max_open:
                self.handles.pop(next(iter(self.handles))).close()
            handle = (self.out_dir / _FILE.format(partition=partition, tag=self.tag)).open("ab")
        handle.write(data)
        self.handles[partition] = handle

    def flush(self) -> None:
        """Everything written so far readable by another process."""
        for handle in self.handles.values():
            handle.flush()

    def close(self) -> None:
        for handle in self.handles.values():
            handle.close()
        self.handles.clear()

    def __enter__(self) -> PartitionFiles:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def scan_piece(
    piece: tuple[InputFile, int, int], partitions: int, out: PartitionFiles, sieve: Sieve | None = None
) -> ScanStats:
    """Route one piece of one file into `out`'s partition files (flushed when it returns); the stats and
    catalogue."""
    f, start, end = piece
    stats = ScanStats()
    buffers: dict[int, list[bytes]] = {}
    lines = size = pending = 0
    passes_over = sieve.passes_over if sieve is not None and sieve.sifts(f.resource_type) else None
    unasked: dict[str, int] = {}  # a plain dict: a Counter's += costs more, asked of most vital-sign lines
    for block in read_piece(f, start, end):
        lines += len(block)
        size += sum(map(len, block))
        for line in block:
            if passes_over is not None and (rtype := passes_over(line)) is not None:
                unasked[rtype] = unasked.get(rtype, 0) + 1
                continue
            try:
                pid, resource = _route(line, f.resource_type)
            except ValueError:
                stats.unreadable += 1
                continue
            if pid is None:
                rtype = resource.get("resourceType") if resource else f.resource_type
                if resource is not None and rtype in CATALOGUE_TYPES and isinstance(resource.get("id"), str):
                    stats.catalogue[f"{rtype}/{resource['id']}"] = catalogue_entry(resource)
                else:
                    stats.unattributed += 1
                continue
            if f.resource_type == "Patient" or (resource is not None and resource.get("resourceType") == "Patient"):
                stats.patients += 1
            # Joined once when flushed: concatenating here would copy every line twice more.
            buffers.setdefault(partition_of(pid, partitions), []).extend((pid, SEPARATOR, line, b"\n"))
        pending += len(block)
        if pending >= FLUSH_LINES:
            _flush(buffers, out)
            pending = 0
    _flush(buffers, out)
    out.flush()
    stats.lines, stats.bytes = lines, size + lines  # each line with its newline
    stats.unasked.update(unasked)
    return stats


def _flush(buffers: dict[int, list[bytes]], out: PartitionFiles) -> None:
    for p, items in buffers.items():
        if items:
            out.write(p, b"".join(items))
            items.clear()


def catalogue_entry(resource: dict[str, Any]) -> dict[str, Any]:
    """What the audit reads from a shared resource: all of a Medication (the pathway reads its code),
    names and links of the others (for the report's practitioner, organisation and location)."""
    if resource.get("resourceType") == "Medication":
        return resource
    keep = ("resourceType", "id", "name", "practitioner", "organization", "location", "managingOrganization",
            "partOf")
    return {k: resource[k] for k in keep if k in resource}


def partition_files(out_dir: Path, partition: int) -> list[Path]:
    return sorted(out_dir.glob(_FILE.format(partition=partition, tag="*")))


def read_partition(paths: Iterable[Path]) -> dict[str, list[bytes]]:
    """Patient id → the raw lines of that patient, from one partition's files."""
    patients: dict[bytes, list[bytes]] = {}
    for path in paths:  # in blocks: a file (one per routing worker) may hold half the partition
        for block in line_blocks(path):
            for line in block:
                pid, _, body = line.partition(SEPARATOR)
                patients.setdefault(pid, []).append(body)
    return {pid.decode(): lines for pid, lines in patients.items()}


def type_counts(resources: Iterable[dict[str, Any]]) -> Counter[str]:
    return Counter(str(r.get("resourceType")) for r in resources)
