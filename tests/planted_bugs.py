"""Plant each one-line bug of docs/testing.md#planted-bugs, run the fast tests, put the file back; print the result.

Run by hand (`.venv/bin/python tests/planted_bugs.py [WORD...]`, only the bugs whose name holds a WORD), never by
pytest or CI. Each bug is an exact text replacement in one file; the file is restored with `git checkout`, so the
script refuses to start while any file it plants in has uncommitted changes. A bug whose text is no longer in its
file is reported as "not found" (the code moved: update the list), never as caught.
"""

from __future__ import annotations

import subprocess
import sys
import time
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
IMAGING, SURGERY, CONSERVATIVE = "cds_hooks/pathway/imaging.py", "cds_hooks/pathway/surgery.py", \
    "cds_hooks/pathway/conservative.py"
EPISODE, RED_FLAGS, CONTEXT = "cds_hooks/pathway/episode.py", "cds_hooks/pathway/red_flags.py", \
    "cds_hooks/pathway/context.py"
FINDINGS, WORDING, FETCH, CARDS_YAML = "cds_hooks/pathway/findings.py", "cds_hooks/pathway/wording.py", \
    "cds_hooks/fhir/fetch.py", "rules/cards.yaml"
PARTITION, JUDGE, ADAPTER = "cds_hooks/audit/partition.py", "cds_hooks/audit/judge.py", "cds_hooks/audit/adapter.py"
MEASURE, SIEVE = "cds_hooks/audit/measure.py", "cds_hooks/audit/sieve.py"
RESOURCES, VERDICTS = "cds_hooks/fhir/resources.py", "cds_hooks/fhir/element_verdicts.py"

Edit = tuple[str, str, str]  # file, text, replacement (every occurrence)
BUGS: list[tuple[str, list[Edit]]] = [
    ("symptom duration < to <=",
     [(IMAGING, "if days < settings.min_symptom_weeks * 7:", "if days <= settings.min_symptom_weeks * 7:")]),
    ("conservative trial, formal PT, < to <=",
     [(IMAGING, "if (ctx.today - first).days < trial_days:", "if (ctx.today - first).days <= trial_days:")]),
    ("conservative trial, any modality, < to <=",
     [(IMAGING, "if (ctx.today - start).days < trial_days:", "if (ctx.today - start).days <= trial_days:")]),
    ("PT session count for imaging < to <=",
     [(IMAGING, "if len(care.sessions) < minimum:", "if len(care.sessions) <= minimum:")]),
    ("PT session count for a referral < to <=",
     [(SURGERY, "if len(care.sessions) < minimum:", "if len(care.sessions) <= minimum:")]),
    ("PT span < to <=", [(SURGERY, "if span < min_weeks * 7:", "if span <= min_weeks * 7:")]),
    ("surgery window > to >=", [(SURGERY, "start > months_before(ctx.today, settings.window_months)",
                                  "start >= months_before(ctx.today, settings.window_months)")]),
    ("duplicate look-back <= to <",
     [(IMAGING, "if e.start and since <= e.start <= ctx.today", "if e.start and since < e.start <= ctx.today")]),
    ("red-flag condition window >= to >",
     [(RED_FLAGS, "return day >= today - timedelta", "return day > today - timedelta")]),
    ("red-flag current-medication window > to >=",
     [(RED_FLAGS, "if e > horizon and s <= today", "if e >= horizon and s <= today")]),
    ("red-flag days of medication use >= to >",
     [(RED_FLAGS, "len(covered) >= rule.min_days", "len(covered) > rule.min_days")]),
    ("red-flag vital sign >= to >", [(RED_FLAGS, "e.value >= rule.min_value", "e.value > rule.min_value")]),
    ("minimum age < to <=", [(CONTEXT, "self.age < bounds.min_age_years", "self.age <= bounds.min_age_years")]),
    ("maximum age > to >=", [(CONTEXT, "self.age > bounds.max_age_years", "self.age >= bounds.max_age_years")]),
    ("older age (radiography released) < to <=",
     [(IMAGING, "ctx.age < older.min_age_years", "ctx.age <= older.min_age_years")]),
    ("age turns on the birthday < to <=", [(RESOURCES, "((on.month, on.day) < (born.month, born.day))",
                                             "((on.month, on.day) <= (born.month, born.day))")]),
    ("episode gap >= to >", [(EPISODE, "if (start - day).days >= gap:", "if (start - day).days > gap:")]),
    ("default medication supply one day longer",
     [(CONSERVATIVE, "else rules.pathway.medications.default_supply_days)",
       "else rules.pathway.medications.default_supply_days + 1)")]),
    ("same-server check on paging next links removed",
     [(FETCH, "if url is None or not same_server(url, base):  # a next link", "if url is None:  # a next link")]),
    ("response byte cap removed (Content-Length and streamed count)",
     [(FETCH, "return self._bytes >= 0 and self._values >= 0", "return self._values >= 0"),
      (FETCH, "if length.isdigit() and int(length) > call.bytes_left():", "if False:")]),
    ("byte cap: Content-Length check alone removed",
     [(FETCH, "if length.isdigit() and int(length) > call.bytes_left():", "if False:")]),
    ("byte cap: streamed count alone removed",
     [(FETCH, "return self._bytes >= 0 and self._values >= 0", "return self._values >= 0")]),
    ("byte cap >= 0 to > 0", [(FETCH, "return self._bytes >= 0 and", "return self._bytes > 0 and")]),
    ("per-search resource cap removed",
     [(FETCH, "room = self.limits.max_resources - len(entries)", "room = len(page)"),
      (FETCH, " or len(entries) >= self.limits.max_resources:", ":")]),
    ("page cap >= to >",
     [(FETCH, 'if progress["pages"] >= self.limits.max_pages', 'if progress["pages"] > self.limits.max_pages')]),
    ("Markdown escaping of patient text off",
     [(WORDING, 'return _MD_SPECIAL.sub(r"\\\\\\1", " ".join(str(text).split()))',
       'return " ".join(str(text).split())')]),
    ("referral card summary reversed (seeds)",
     [(CARDS_YAML, '    summary: "{order} likely premature: {reasons}"\n    headline: Spine surgery referral',
       '    summary: "{order} fits the pathway: {reasons}"\n    headline: Spine surgery referral')]),
    ("referral card reason reversed (payer)",
     [(CARDS_YAML, "        brief: no conservative care\n        line: No conservative care this episode; it comes",
       "        brief: conservative care documented\n        line: No conservative care this episode; it comes")]),
    ("referral card reason reversed (nice-ng59)",
     [(CARDS_YAML, "brief: no exercise-based package", "brief: exercise-based package done")]),
    ("duplicate card summary reversed",
     [(CARDS_YAML, '"{order} likely a repeat: {reasons}"', '"{order} not a repeat: {reasons}"')]),
    ("duplicate card line reversed (a study found to none found)",
     [(CARDS_YAML, 'line: "Same kind of study on {date}; no new indication is coded"',
       'line: "No study of the same kind since {date}; no new indication is coded"')]),
    ("duplicate card basis reversed (already done to not done)",
     [(CARDS_YAML, "The same kind of lumbar study was already done:", "The same kind of lumbar study was not done:")]),
    ("future-dated care filter removed (sessions and other care)",
     [(CONSERVATIVE, "if e.start is None or e.start > today:", "if e.start is None:")]),
    ("future-dated care filter removed (medications)",
     [(CONSERVATIVE, "if days is None or days[0] > today:", "if days is None:")]),
    ("future-dated care filter removed (PT referrals)",
     [(CONSERVATIVE, "episode.start <= e.start <= today:", "episode.start <= e.start:")]),
    ("date read from its first nine characters", [(RESOURCES, "return _day(value[:10])", "return _day(value[:9])")]),
    ("a value known as one field taken for a field of any type",
     [(VERDICTS, "data = plain_json((_field_type(model, _keys(model)[key][0])[0], value))",
       "data = plain_json((0, value))")]),
    ("audit routing: a line opening with Patient/ taken as quoted",
     [(PARTITION, "    if at == 0 or line[at - 1] != _QUOTE:", "    if line[at - 1] != _QUOTE:")]),
    ("audit routing: a second Patient/ right after the first missed",
     [(PARTITION, 'if line.find(b"Patient/", at + 8) >= 0:', 'if line.find(b"Patient/", at + 9) >= 0:')]),
    ("audit prefetch holds an Observation of any code",
     [(ADAPTER, "                return True\n        return False\n\n    def record(",
       "                return True\n        return True\n\n    def record(")]),
    ("audit measures' record leaves out what a measure asks about",
     [(JUDGE, "return kinds is None or not kinds.isdisjoint(asked)", "return kinds is None")]),
    ("audit measures' questions without their exclusions' kinds",
     [(JUDGE, "m.diagnosis_kind, m.imaging_kind, *(x.kind for x in m.exclusions)))})",
       "m.diagnosis_kind, m.imaging_kind))})")]),
    ("audit measure index looked for without the birth date",
     [(MEASURE, 'INDEX_TYPES = frozenset({INDEX_TYPE, "Patient"})', 'INDEX_TYPES = frozenset({INDEX_TYPE})')]),
    ("audit sieve passes over a line with an escape",
     [(SIEVE, 'if line.find(b"\\\\") >= 0 or line.find(_KEY, end) >= 0:', "if line.find(_KEY, end) >= 0:")]),
    ("audit sieve passes over a line with a second resourceType",
     [(SIEVE, 'if line.find(b"\\\\") >= 0 or line.find(_KEY, end) >= 0:', 'if line.find(b"\\\\") >= 0:')]),
    ("audit sieve passes over a line holding an asked code",
     [(SIEVE, "                    if line.startswith(needle, at):\n                        return None",
       "                    if line.startswith(needle, at):\n                        return found[0]")]),
    ("audit sieve leaves out the codes asked for with a system",
     [(ADAPTER, "return self.codes | {code for _, code in self.pairs}", "return self.codes")]),
    ("audit sieve over a type searched by system alone",
     [(ADAPTER, "if searches is not None and not any(s.systems for s in searches)}", "if searches is not None}")]),
    ("audit orders read only through the prefetch",
     [(JUDGE, "WHOLE_TYPES = frozenset({*ORDER_CODES, *INDEX_TYPES,", "WHOLE_TYPES = frozenset({*INDEX_TYPES,")]),
    ("reader drops a different resource under an id already read",
     [("cds_hooks/pathway/reader.py", "if same_id and any(earlier == res", "if same_id or any(earlier == res")]),
    ("audit partition files: none closed past the limit",
     [(PARTITION, "            if len(self.handles) >= self.max_open:", "            if False:")]),
    ("audit partition file reopened to overwrite",
     [(PARTITION, 'self.tag}.ndjson").open("ab")', 'self.tag}.ndjson").open("wb")')]),
    ("audit routed piece left unflushed",
     [(PARTITION, "    out.flush()\n    stats.lines", "    stats.lines")]),
    ("completed status filter on prior surgery removed",
     [(CONTEXT, 'if e.status == "completed" and (e.start is None or e.start <= today)',
       "if (e.start is None or e.start <= today)")]),
]


def fast_tests() -> list[str]:
    """The fast tests: the ones `./dev mutate` judges mutants with (pyproject.toml)."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["mutmut"]
    return list(config["pytest_add_cli_args_test_selection"])


def main(words: list[str]) -> int:
    chosen = [(name, edits) for name, edits in BUGS if not words or any(w in name for w in words)]
    files = sorted({f for _, edits in chosen for f, _, _ in edits})
    dirty = subprocess.run(["git", "status", "--porcelain", "--", *files], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout
    if dirty:
        print(f"uncommitted changes in files a bug is planted in (commit or stash them first):\n{dirty}")
        return 2
    missed = 0
    for name, edits in chosen:
        touched = sorted({f for f, _, _ in edits})
        try:
            found = True
            for path, text, replacement in edits:
                source = (REPO / path).read_text()
                found = found and text in source
                (REPO / path).write_text(source.replace(text, replacement))
            if not found:
                print(f"not found | {name}", flush=True)
                missed += 1
                continue
            started = time.monotonic()
            run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                                  *fast_tests()], cwd=REPO, capture_output=True, text=True)
            failed = [line.removeprefix("FAILED ").split(" - ")[0] for line in run.stdout.splitlines()
                      if line.startswith(("FAILED", "ERROR"))]
            caught = run.returncode != 0
            missed += not caught
            print(f"{'caught' if caught else 'MISSED'} | {name} | {time.monotonic() - started:.0f} s | "
                  f"{failed[0] if failed else ''}", flush=True)
        finally:
            subprocess.run(["git", "checkout", "--", *touched], cwd=REPO, check=True)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
