"""Compiled code lookup: (system, code) → the value sets it belongs to, in one dict probe."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from cds_hooks.pathway.rules.schema import Code, CodeSystem, ValueSet


@dataclass(frozen=True, slots=True)
class Match:
    """A value set a coding belongs to."""

    valueset: ValueSet
    code: Code


@dataclass
class CodeIndex:
    """(system, code) → value sets, plus ICD-10-CM descendant prefixes and text fallbacks."""

    exact: dict[tuple[str, str], list[Match]] = field(default_factory=dict)
    prefixes: dict[tuple[str, str], list[Match]] = field(default_factory=dict)
    hierarchical: frozenset[str] = frozenset()
    text: list[tuple[str, ValueSet]] = field(default_factory=list)
    _memo: dict[tuple[str, str], list[Match]] = field(default_factory=dict, repr=False)

    @staticmethod
    def _norm(code: str) -> str:
        return code.replace(".", "").upper()

    def lookup(self, system: str | None, code: str | None) -> list[Match]:
        if not isinstance(system, str) or not isinstance(code, str):
            return []
        key = (system, code)
        memo = self._memo.get(key)
        if memo is None:
            memo = self._lookup(system, code)
            if len(self._memo) >= 65536:  # bound memory on hostile input
                self._memo.clear()
            self._memo[key] = memo
        return memo

    def _lookup(self, system: str, code: str) -> list[Match]:
        # Every value set the code is in: listed exactly, or under a listed
        # ICD-10-CM header (M80.08XA is both a fracture and osteoporosis).
        found = list(self.exact.get((system, code), ()))
        if system in self.hierarchical and self.prefixes:
            norm = self._norm(code)
            for end in range(len(norm), 2, -1):
                for match in self.prefixes.get((system, norm[:end]), ()):
                    if match not in found:
                        found.append(match)
        return found

    def lookup_text(self, text: str) -> list[Match]:
        lowered = text.lower()
        return [
            Match(vs, vs.codes[0]) for needle, vs in self.text if needle in lowered
        ]


def build_index(valuesets: Iterable[ValueSet], systems: dict[str, CodeSystem]) -> CodeIndex:
    index = CodeIndex(hierarchical=frozenset(u for u, s in systems.items() if s.hierarchical))
    for vs in valuesets:
        for code in vs.codes:
            match = Match(vs, code)
            index.exact.setdefault((code.system, code.code), []).append(match)
            if code.descendants:
                index.prefixes.setdefault((code.system, CodeIndex._norm(code.code)), []).append(match)
        for needle in vs.text_match:
            index.text.append((needle.lower(), vs))
    return index
