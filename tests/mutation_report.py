"""The mutation score per module and the surviving mutants, from the results `mutmut run` left in mutants/.

Run by `./dev mutate` after mutmut (docs/testing.md#mutation-testing). A survivor that docs/testing.md lists as
equivalent (its mutant name in backquotes in the "Accepted survivors" section) is counted apart; any other
survivor is printed with its diff, so it can be killed by a test or argued equivalent there.
"""

from __future__ import annotations

import json
import re
import sys
import tomllib
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KILLED = {"killed", "timeout", "caught by type check"}  # a test (or the clock) noticed the mutant
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped", 36: "timeout",
          37: "caught by type check", -24: "timeout", 24: "timeout", 152: "timeout", 255: "timeout",
          2: "interrupted", None: "not checked"}


def accepted() -> dict[str, str]:
    """Mutant name -> why it is equivalent, from docs/testing.md's "Accepted survivors" section."""
    text = (REPO / "docs" / "testing.md").read_text(encoding="utf-8")
    section = text.split("### Accepted survivors", 1)[-1].split("\n## ", 1)[0] if "### Accepted survivors" in text \
        else ""
    found: dict[str, str] = {}
    for line in section.splitlines():
        names = re.findall(r"`(cds_hooks\.[\w.]+__mutmut_\d+)`", line)
        for name in names:
            found[name] = line.split(":", 1)[-1].strip()
    return found


def main() -> int:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["mutmut"]
    equivalent = accepted()
    rows, survivors = [], []
    totals: Counter[str] = Counter()
    for path in config["only_mutate"]:
        meta = REPO / "mutants" / f"{path}.meta"
        try:
            codes = json.loads(meta.read_text())["exit_code_by_key"]
        except (FileNotFoundError, ValueError, KeyError):  # never run, or its results lost (mutmut stopped mid-write)
            rows.append((path, Counter()))
            continue
        counts: Counter[str] = Counter()
        for name, code in sorted(codes.items()):
            status = STATUS.get(code, "suspicious")
            if status in ("survived", "no tests"):
                status = "equivalent" if name in equivalent else status
                if status != "equivalent":
                    survivors.append((name, status))
            counts[status] += 1
        rows.append((path, counts))
        totals.update(counts)
    print(f"{'module':<38} {'mutants':>7} {'killed':>7} {'equiv':>6} {'surv':>5} {'untested':>8} {'unrun':>6} "
          f"{'score':>6}")
    for path, counts in [*rows, ("all", totals)]:
        checked = sum(counts.values()) - counts["not checked"]
        done = sum(counts[s] for s in KILLED) + counts["equivalent"]
        score = f"{100 * done / checked:5.1f}%" if checked else "    -"
        print(f"{path.removeprefix('cds_hooks/'):<38} {sum(counts.values()):>7} "
              f"{sum(counts[s] for s in KILLED):>7} {counts['equivalent']:>6} {counts['survived']:>5} "
              f"{counts['no tests']:>8} {counts['not checked']:>6} {score:>6}")
    print("\nscore = (killed + timed out + accepted equivalents) / mutants checked; 'untested': no selected test "
          "runs the function; 'unrun': not checked yet (an interrupted run).")
    if survivors:
        print(f"\n{len(survivors)} surviving mutant(s) not listed as equivalent in docs/testing.md:")
        try:
            from mutmut.mutation.diff_apply import get_diff_for_mutant
        except ImportError:  # an older or newer mutmut: names only
            get_diff_for_mutant = None
        for name, status in survivors:
            print(f"\n# {name}: {status}")
            if get_diff_for_mutant is not None:
                try:
                    print(get_diff_for_mutant(name).rstrip())
                except Exception as exc:  # the report must not die on one unreadable mutant
                    print(f"(no diff: {type(exc).__name__})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
