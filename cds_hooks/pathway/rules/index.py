"""Compiled code lookup: (system, code) → the value sets it belongs to, in one dict probe.

ICD-10-CM codes compare without dots and case (M54.50 = m5450), match under a header listed with
`descendants`, and pass two data rules: a value set's exclusions, and the 7th-character rule of a
red-flag category (S32.010A counts as a recent fracture, S32.010D and S32.010S do not).
SNOMED CT and the other systems match by membership of the (published, expanded) sets only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from cds_hooks.pathway.rules.schema import Code, CodeSystem, PublishedCode, ValueSet


@dataclass(frozen=True, slots=True)
class Match:
    """A value set a coding belongs to."""

    valueset: ValueSet
    code: Code | PublishedCode

    def __repr__(self) -> str:  # a value set can hold 8,000 codes: never print them
        return f"Match({self.valueset.id}: {self.code.system}|{self.code.code})"


def normalise(code: str) -> str:
    return code.replace(".", "").strip().upper()


@dataclass
class CodeIndex:
    """(system, code) → value sets, plus ICD-10-CM descendant prefixes, exclusions and 7th characters."""

    exact: dict[tuple[str, str], list[Match]] = field(default_factory=dict)
    prefixes: dict[tuple[str, str], list[Match]] = field(default_factory=dict)
    hierarchical: frozenset[str] = frozenset()
    extension_systems: frozenset[str] = frozenset()
    # value set id -> excluded (system, normalised code) and excluded (system, normalised prefix)
    excluded: dict[str, tuple[frozenset[tuple[str, str]], tuple[tuple[str, str], ...]]] = field(default_factory=dict)
    # red-flag category -> 7th characters that count
    seventh: dict[str, frozenset[str]] = field(default_factory=dict)
    _memo: dict[tuple[str, str], list[Match]] = field(default_factory=dict, repr=False)

    def key(self, system: str, code: str) -> tuple[str, str]:
        return (system, normalise(code)) if system in self.hierarchical else (system, code)

    def entry(self, system: str, code: str) -> list[Match]:
        """The value sets that list exactly this code (no descendants, no rules applied)."""
        return self.exact.get(self.key(system, code), [])

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
        key = self.key(system, code)
        found = list(self.exact.get(key, ()))
        if system in self.hierarchical and self.prefixes:
            norm = key[1]
            for end in range(len(norm) - 1, 2, -1):
                for match in self.prefixes.get((system, norm[:end]), ()):
                    if match not in found:
                        found.append(match)
        if not found:
            return found
        return [m for m in found if self._admits(m, key)]

    def _admits(self, match: Match, key: tuple[str, str]) -> bool:
        rule = self.excluded.get(match.valueset.id)
        if rule is not None:
            codes, prefixes = rule
            if key in codes or any(key[0] == s and key[1].startswith(p) for s, p in prefixes):
                return False
        allowed = self.seventh.get(match.valueset.category or "") if match.valueset.kind == "red-flag" else None
        if allowed is not None and key[0] in self.extension_systems and len(key[1]) == 7:
            return key[1][6] in allowed
        return True


def build_index(
    valuesets: Iterable[ValueSet], systems: Mapping[str, CodeSystem], seventh: Mapping[str, list[str]] | None = None
) -> CodeIndex:
    index = CodeIndex(
        hierarchical=frozenset(u for u, s in systems.items() if s.hierarchical),
        extension_systems=frozenset(u for u, s in systems.items() if s.seventh_character_extension),
        seventh={category: frozenset(c.upper() for c in chars) for category, chars in (seventh or {}).items()},
    )
    for vs in valuesets:
        if vs.exclusions:
            index.excluded[vs.id] = (
                frozenset(index.key(x.system, x.code) for x in vs.exclusions if not x.descendants),
                tuple(index.key(x.system, x.code) for x in vs.exclusions if x.descendants),
            )
        for code in vs.codes:
            key = index.key(code.system, code.code)
            match = Match(vs, code)
            index.exact.setdefault(key, []).append(match)
            if code.descendants:
                index.prefixes.setdefault(key, []).append(match)
    return index
