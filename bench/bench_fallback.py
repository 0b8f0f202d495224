"""Benchmark: hook latency when the EHR sends no prefetch, against a real FHIR server.

Loads one patient with about 200 history resources into sekmet-fhir on
127.0.0.1, then times the same order-select call through the Flask app twice
over: with full prefetch, and with none (the service runs its nine prefetch
queries against the server, concurrently). Prints median and p95 and their
ratio; nothing here asserts a time.

    python bench/bench_fallback.py [--resources 200] [--repeat 50]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_service import build_request
from cds_hooks.app import create_app
from cds_hooks.fhir.bundles import bundle_resources
from cds_hooks.pathway.rules import load_rules
from cds_hooks.settings.config import Settings
from tests.sekmet import TOKEN, full_prefetch, put_resources, sekmet_server

SERVICE = "/cds-services/lumbar-pathway-order-select"


def _requests(base: str, resources: int) -> tuple[dict[str, Any], dict[str, Any], int]:
    """Load the history; return the full-prefetch and no-prefetch requests."""
    request = orjson.loads(build_request(resources))
    prefetch = request.pop("prefetch")
    # The service does not query Observations; keep the history to what its templates return.
    history = [r for v in prefetch.values() if v for r in bundle_resources(v) if r["resourceType"] != "Observation"]
    accepted = put_resources(base, history)
    assert len(accepted) == len(history), "the server refused part of the benchmark history"
    full = full_prefetch(load_rules().services[SERVICE.rsplit("/", 1)[1]], accepted)
    request |= {"fhirServer": base, "fhirAuthorization": {
        "access_token": TOKEN, "token_type": "Bearer", "expires_in": 300, "scope": "patient/*.read",
        "subject": "lumbar-cds"}}
    return request | {"prefetch": full}, request, len(accepted)


def _times(client: Any, body: bytes, repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        response = client.post(SERVICE, data=body, content_type="application/json")
        samples.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, response.get_data()[:300]
    return samples


def _p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--resources", type=int, default=250, help="history generated (Observations are dropped)")
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, sekmet_server(Path(tmp)) as base:
        full, bare, count = _requests(base, args.resources)
        app = create_app(Settings(data_dir=Path(tmp) / "cds", log_level="WARNING", auto_migrate=True))
        client = app.test_client()
        full_body, bare_body = orjson.dumps(full), orjson.dumps(bare)
        cards_full = client.post(SERVICE, data=full_body, content_type="application/json").get_json()["cards"]
        cards_bare = client.post(SERVICE, data=bare_body, content_type="application/json").get_json()["cards"]
        assert [c["summary"] for c in cards_full] == [c["summary"] for c in cards_bare]
        _times(client, bare_body, 5)  # warm the connection pool and validation cache alike
        with_prefetch = _times(client, full_body, args.repeat)
        without = _times(client, bare_body, args.repeat)
    print(f"patient history on the FHIR server: {count} resources; {args.repeat} calls each")
    print(f"{'request':>22} {'median ms':>10} {'p95 ms':>8}")
    for name, samples in (("full prefetch", with_prefetch), ("no prefetch (fallback)", without)):
        print(f"{name:>22} {statistics.median(samples):>10.1f} {_p95(samples):>8.1f}")
    print(f"fallback / prefetch: median {statistics.median(without) / statistics.median(with_prefetch):.1f}×, "
          f"p95 {_p95(without) / _p95(with_prefetch):.1f}×")


if __name__ == "__main__":
    main()
