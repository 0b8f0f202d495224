"""Benchmark: the FHIR export of large published value sets, and loading it into a real FHIR server.

Copies rules/ and adds `--sets` value sets of `--codes` synthetic codes each (marked as imported whole from
a published source), then times loading the rules, building and validating the Bundle (fhir.resources
R4B), and loading it as one transaction into sekmet-fhir on 127.0.0.1; reads one large ValueSet back.
Prints times and the Bundle's size; nothing here asserts a time.

    python bench/bench_export.py [--sets 25] [--codes 1000]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cds_hooks.governance.fhir_bundle import export_bundle, transaction
from cds_hooks.pathway.rules import load_rules
from tests.sekmet import REPO, TOKEN, sekmet_server


def _large_rules(target: Path, sets: int, codes: int) -> Path:
    rules_dir = target / "rules"
    shutil.copytree(REPO / "rules", rules_dir)
    valuesets = [{
        "id": f"bench-{i}", "kind": "red-flag", "category": "cancer", "title": f"Synthetic published set {i}",
        "source": "synthetic, for the benchmark",
        "published": {"oid": f"2.16.840.1.113883.3.999.{i}", "name": f"Synthetic {i}", "version": "2024",
                      "repository": "example/bench", "path": f"ValueSet-{i}.json", "commit": "0" * 40,
                      "code_count": codes},
        "codes": [{"system": "http://snomed.info/sct", "code": str(900000000 + i * 100000 + j),
                   "display": f"Synthetic concept {i}-{j} (disorder)"} for j in range(codes)],
    } for i in range(sets)]
    (rules_dir / "valuesets" / "bench.yaml").write_text(yaml.safe_dump({"valuesets": valuesets}))
    return rules_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sets", type=int, default=25)
    parser.add_argument("--codes", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rules_dir = _large_rules(work, args.sets, args.codes)
        start = time.perf_counter()
        rules = load_rules(rules_dir)
        loaded = time.perf_counter()
        bundle = transaction(export_bundle(rules))
        exported = time.perf_counter()
        body = orjson.dumps(bundle)
        total = sum(len(v.codes) for v in rules.valuesets.values())
        print(f"{len(rules.valuesets)} value sets, {total} codes: load rules {loaded - start:.1f} s, "
              f"export and validate {exported - loaded:.1f} s, Bundle {len(body) / 1e6:.1f} MB "
              f"({len(bundle['entry'])} entries)")
        (work / "sekmet").mkdir()
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/fhir+json"}
        with sekmet_server(work / "sekmet") as base, httpx.Client(headers=headers, timeout=600) as client:
            start = time.perf_counter()
            response = client.post(base, content=body)
            stored = time.perf_counter()
            response.raise_for_status()
            read = client.get(f"{base}/ValueSet/bench-0")
            back = sum(len(i.get("concept", [])) for i in read.json()["compose"]["include"])
            print(f"sekmet-fhir transaction: {stored - start:.1f} s for {len(body) / 1e6:.1f} MB; "
                  f"ValueSet bench-0 read back with {back} of {args.codes} codes "
                  f"in {time.perf_counter() - stored:.2f} s")


if __name__ == "__main__":
    main()
