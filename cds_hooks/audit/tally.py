"""Counts an audit adds up: mergeable, so partitions, processes and Spark executors each keep their own
and the driver adds them. Keys are tuples of short strings; no patient identifier is ever a key.

- ("orders", dimension, value, metric): one per order and dimension it falls in; dimensions `all`,
  `month`, `category`, `source`, `practitioner`, `organization`, `location`; metrics `orders`, `warned`,
  `rule:<id>`, `red-flag`, `silent`, `refused`, `warned-then-red-flag`.
- ("red-flag", category): orders kept quiet for which that red-flag category alone was enough.
- ("measure", measure, dimension, value, metric): dimensions `all`, `stratum`, `month`; metrics
  `index`, `prior-episode`, `no-birth-date`, `outside-age`, `excluded`, `excluded:<id>`,
  `denominator`, `numerator`.
- ("data", name): patients, resources by type, unreadable lines, resources the reader skipped.
"""

from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

DIMENSIONS = ("all", "month", "category", "source", "practitioner", "organization", "location")


@dataclass
class Tally:
    counts: Counter[tuple[str, ...]] = field(default_factory=Counter)
    # rule → [(-sort key, sample)]: a max-heap of the `limit` samples with the smallest keys
    samples: dict[str, list[tuple[bytes, dict[str, Any]]]] = field(default_factory=dict)
    sample_limit: int = 0

    def add(self, *key: str, n: int = 1) -> None:
        self.counts[key] += n

    def add_order(self, dims: dict[str, str], metrics: list[str]) -> None:
        for dimension in DIMENSIONS:
            value = dims.get(dimension, "all")
            for metric in metrics:
                self.counts[("orders", dimension, value, metric)] += 1

    def wants_sample(self, rule: str, key: bytes) -> bool:
        if self.sample_limit <= 0:
            return False
        heap = self.samples.get(rule, [])
        return len(heap) < self.sample_limit or key < _inverse(heap[0][0])

    def add_sample(self, rule: str, key: bytes, sample: dict[str, Any]) -> None:
        heap = self.samples.setdefault(rule, [])
        item = (_inverse(key), sample)
        if len(heap) < self.sample_limit:
            heapq.heappush(heap, item)
        elif key < _inverse(heap[0][0]):
            heapq.heapreplace(heap, item)

    def merge(self, other: Tally) -> Tally:
        self.counts.update(other.counts)
        self.sample_limit = max(self.sample_limit, other.sample_limit)
        for rule, heap in other.samples.items():
            for inverse_key, sample in heap:
                self.add_sample(rule, _inverse(inverse_key), sample)
        return self

    def sorted_samples(self, rule: str) -> list[dict[str, Any]]:
        """Samples by their key: the same ones, in the same order, whatever the engine."""
        return [s for _, s in sorted(self.samples.get(rule, ()), key=lambda item: _inverse(item[0]))]


def _inverse(key: bytes) -> bytes:
    """Byte-wise complement: heapq is a min-heap, and the heap must drop the largest key."""
    return bytes(255 - b for b in key)
