"""Text that came from callers (override codes and displays in EHR feedback), made safe to print.

The committee report goes to terminals, text files and spreadsheets. A terminal runs escape sequences
(ESC, and the C1 control CSI), a newline in a value would forge a row, invisible bidirectional overrides
reorder what is read, and a spreadsheet runs a cell, or any part of one after a separator it splits on
(`x;=1+1` opened with `;` as the separator), that starts with = + - or @ as a formula.
"""

from __future__ import annotations

import re

# C0 and C1 controls, DEL, the Arabic letter mark, LRM/RLM, line and paragraph separators, the
# bidirectional embeddings, overrides and isolates, and the byte-order mark.
_HIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ufeff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# A formula trigger at the start of the text or after anything but a letter or digit (a separator a
# spreadsheet might split on: , ; | tab space ...). "conservative-care" keeps its hyphen as it is.
_FORMULA_START = re.compile(r"(?:^|(?<=[^0-9A-Za-z]))(?=[=+\-@])")


def printable(text: str) -> str:
    """`text` with every hidden or control character written as a visible escape (\\n, \\x1b, \\u202e)."""

    def escape(match: re.Match[str]) -> str:
        char = match.group(0)
        code = ord(char)
        return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")

    return _HIDDEN.sub(escape, text)


def spreadsheet_cell(text: str) -> str:
    """`printable(text)`, with a `'` before every = + - @ that a spreadsheet could read as a formula start."""
    return _FORMULA_START.sub("'", printable(text))
