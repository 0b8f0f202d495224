"""Bounds on hostile input that the wire models cannot express.

orjson already refuses JSON nested deeper than 1024 levels. That is still deep
enough to break code that recurses or re-serialises (orjson.dumps stops at 255),
so every part of a request the service actually reads is held to MAX_DEPTH.
History resources the rules never look at are not walked at all: their depth
cannot matter, and walking them would cost as much as parsing the body.
"""

from __future__ import annotations

from typing import Any

# Real FHIR JSON read by the rules nests about 8 levels (Bundle > entry > resource
# > code > coding); 64 leaves room for vendor extensions within extensions.
MAX_DEPTH = 64


def deeper_than(value: Any, limit: int = MAX_DEPTH) -> bool:
    """True if arrays/objects nest more than `limit` levels. Iterative: O(nodes), no recursion."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False
