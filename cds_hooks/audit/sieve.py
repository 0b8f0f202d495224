"""Lines no prefetch search can hold, told from their bytes (see `Sieve`), so that routing passes them over."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

_HEAD = b'{"resourceType":"'
_KEY = b'"resourceType"'


class Sieve:
    """Tells from its bytes a line that no prefetch search can return, so that it is neither routed,
    written, read back nor parsed (most of a chart's vital signs: `Observation?code=` asks for a few).

    `codes` maps a resource type to the codes its prefetch searches ask for (`code=` token searches on
    its `code`, none by system alone): a resource of that type is held only if one of its codings has
    one of them. A line is passed over, and its type returned, only when it begins
    `{"resourceType":"<type>"`, holds no other `"resourceType"` and no backslash, and none of the type's
    codes appears in it as a whole JSON string. That is exact: without a backslash no string is
    escaped, so a coding's code is in the bytes as it is in the JSON, and the one `resourceType` key is
    the resource's own. If the line is a JSON object it is a resource of that type no search holds;
    if it is not, it is unreadable and would be read by nothing either. So the audit's verdicts are the
    same; the report counts the line as not asked for rather than as a resource or an unreadable line.
    Any other line (escapes, spacing, another type, a contained resource) is routed as before.

    The codes are searched for by a short probe, their common opening: one pass over the line, rather
    than one per code (the five temperature codes open alike with `"83`). (Searching a whole block of
    lines at once was tried: bytes are searched at the same speed, so it saved nothing.)"""

    def __init__(self, codes: Mapping[str, Iterable[str]]) -> None:
        self.probes: dict[bytes, tuple[str, list[tuple[bytes, tuple[bytes, ...]]]]] = {}
        for rtype, wanted in codes.items():
            needles = sorted({b'"' + c.encode() + b'"' for c in wanted})
            if not needles:
                continue  # a search that holds nothing: no sieve rather than passing every line over
            # The longest opening that splits the needles into no more groups than their first character.
            size = 2
            while size < min(map(len, needles)) and len({n[:size + 1] for n in needles}) == len(
                    {n[:2] for n in needles}):
                size += 1
            groups: dict[bytes, list[bytes]] = {}
            for needle in needles:
                groups.setdefault(needle[:size], []).append(needle)
            self.probes[rtype.encode()] = (rtype, [(p, tuple(n)) for p, n in sorted(groups.items())])

    def sifts(self, file_type: str | None) -> bool:
        """Whether to ask about the lines of a file of this type (None: of any types). A line in a file of
        another type is routed and read as what it says, by either engine, whatever it claims to be."""
        return file_type is None or file_type.encode() in self.probes

    def passes_over(self, line: bytes) -> str | None:
        """The line's resource type when no prefetch search can hold it, else None (route it)."""
        if not line.startswith(_HEAD):
            return None
        end = line.find(b'"', len(_HEAD))
        found = self.probes.get(line[len(_HEAD):end]) if end > 0 else None
        if found is None:
            return None
        for probe, needles in found[1]:  # first: a line the prefetch holds goes no further
            at = line.find(probe)
            while at >= 0:
                for needle in needles:
                    if line.startswith(needle, at):
                        return None
                at = line.find(probe, at + 1)
        if line.find(b"\\") >= 0 or line.find(_KEY, end) >= 0:
            return None
        return found[0]
