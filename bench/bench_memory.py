"""Memory benchmark: peak RSS and answer time of one hook call whose FHIR server answers with hostile bodies.

A local server plays an allowed FHIR server; each order-select call carries no prefetch, so the service
sends its nine queries there. For each scenario a fresh Python process builds the app (default limits:
32 MiB per call, 2 s deadline), warms it with one call against empty answers, then makes the hostile call
with the kernel's peak-RSS mark reset just before it (`/proc/self/clear_refs`, read back as VmHWM).
It prints the peak growth over the warmed baseline as a multiple of the byte cap (goal: at most about 4x),
the answer time as a multiple of the deadline (goal: at most 1.1x), and what the process still holds
0.5 s after the answer. Nothing here asserts.

    python bench/bench_memory.py
"""

from __future__ import annotations

import argparse
import gc
import os
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parent.parent
SERVICE = "/cds-services/lumbar-pathway-order-select"
CAP = 32 * 1024 * 1024  # the default LUMBAR_CDS_FHIR_MAX_BYTES
VALUES = CAP // 64  # the JSON-value budget it implies (settings/config.py BYTES_PER_JSON_VALUE)
DEADLINE = 2.0  # the default LUMBAR_CDS_FHIR_TIMEOUT
EMPTY = b'{"resourceType":"Bundle","type":"searchset","entry":[]}'


def _bundle_of(item: bytes, count: int, pad: int = 0) -> bytes:
    """A searchset Bundle of `count` copies of `item` as entries, and a `pad` string of `pad` bytes."""
    body = b'{"resourceType":"Bundle","type":"searchset","entry":[' + b",".join([item] * count) + b"]"
    return body + (b',"pad":"' + b"x" * pad + b'"}' if pad else b"}")


def scenarios() -> dict[str, dict[str, bytes]]:
    """Scenario -> (resource type searched -> body; "*" for every query)."""
    budget_item = b'{"a":"b"}'  # the costliest entry per counted value measured with orjson (~105 bytes each)
    per_value = 3  # { : , per item
    whole = _bundle_of(budget_item, VALUES // per_value - 20, pad=CAP - (VALUES // per_value) * 10 - 4096)
    ninth = _bundle_of(budget_item, VALUES // per_value // 9 - 20, pad=(CAP - (VALUES // per_value) * 10) // 9 - 4096)
    return {
        "30 MiB of {} entries, every query": {"*": _bundle_of(b"{}", (30 * 1024 * 1024 - 60) // 3)},
        "one answer spending the whole budget": {"Condition": whole},
        "nine answers, a ninth of the budget each": {"*": ninth},
        "a 31 MiB string": {"Condition": _bundle_of(b"{}", 1, pad=31 * 1024 * 1024)},
        "31 MiB answers to every query": {"*": _bundle_of(b"{}", 1, pad=31 * 1024 * 1024)},
    }


class _Hostile(ThreadingHTTPServer):
    daemon_threads = True
    bodies: dict[str, bytes] = {}  # noqa: RUF012 (set before serving)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the service hanging up on a refused body


class _Handler(BaseHTTPRequestHandler):
    server: _Hostile

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        parts = self.path.split("?")[0].split("/")  # /<base>/fhir/<Type>[/<id>]
        kind = parts[3]
        body = self.server.bodies.get(kind, self.server.bodies.get("*", EMPTY))
        if kind == "Patient" and len(parts) > 4:  # the read of the patient: that patient, not a Bundle
            body = orjson.dumps({"resourceType": "Patient", "id": parts[4]})
        self.send_response(200)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        for start in range(0, len(body), 1 << 20):
            self.wfile.write(body[start:start + (1 << 20)])


# --------------------------------------------------------------------------- the measured process


def _status_kb(field: str) -> int:
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(field + ":"))
    return int(line.split()[1]) * 1024


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS (Linux 4.0+); False if not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def child(base: str) -> None:
    """Build the app, warm it, make the hostile call; print one JSON line of results."""
    sys.path.insert(0, str(REPO))
    from cds_hooks.app import create_app
    from cds_hooks.sandbox.fixtures import fixtures_dir, load_fixture
    from cds_hooks.service.hook import today_utc
    from cds_hooks.settings.config import Settings

    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(Settings(data_dir=Path(tmp), rules_dir=REPO / "rules", log_level="ERROR",
                                  fhir_timeout=DEADLINE, auto_migrate=True))
        client = app.test_client()
        request = load_fixture(fixtures_dir() / "premature-mri-3-weeks.json", today_utc()).request
        request.pop("prefetch")
        warm = orjson.dumps(request | {"fhirServer": f"{base}/warm/fhir"})
        for _ in range(3):
            client.post(SERVICE, data=warm, content_type="application/json")
        hostile = orjson.dumps(request | {"fhirServer": f"{base}/hostile/fhir"})
        gc.collect()
        exact = _reset_peak()
        baseline = _status_kb("VmRSS")
        peak, sampling = [baseline], [True]

        def sample() -> None:  # only if the exact mark cannot be reset: it misses what happens inside orjson
            while sampling[0]:
                peak[0] = max(peak[0], _status_kb("VmRSS"))
                time.sleep(0.002)

        sampler = threading.Thread(target=sample, daemon=True)
        if not exact:
            sampler.start()
        started = time.monotonic()
        response = client.post(SERVICE, data=hostile, content_type="application/json")
        elapsed = time.monotonic() - started
        time.sleep(0.5)  # anything still working after the answer shows here
        sampling[0] = False
        if not exact:
            sampler.join()
        else:
            peak[0] = _status_kb("VmHWM")
        print(orjson.dumps({"status": response.status_code, "seconds": elapsed, "baseline": baseline,
                            "peak": peak[0], "after": _status_kb("VmRSS"), "exact": exact}).decode(), flush=True)


# --------------------------------------------------------------------------- the driver


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    server = _Hostile(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    print(f"byte cap {CAP >> 20} MiB per call, deadline {DEADLINE:g} s; peak = resident memory growth over the "
          "warmed process during the call and 0.5 s after it; kept = still resident 0.5 s after the answer")
    print(f"{'scenario':<42} {'status':>6} {'answer s':>9} {'/ deadline':>10} {'peak MB':>8} {'/ cap':>6} "
          f"{'kept MB':>8}")
    for name, bodies in scenarios().items():
        server.bodies = bodies
        result = subprocess.run([sys.executable, __file__, "--child", base], env=env, capture_output=True,
                                text=True, timeout=300)
        if result.returncode:
            print(f"{name:<42} failed: {result.stderr.strip().splitlines()[-1:]}")
            continue
        r = orjson.loads(result.stdout.strip().splitlines()[-1])
        grown, kept = r["peak"] - r["baseline"], r["after"] - r["baseline"]
        name += "" if r["exact"] else " (sampled)"
        print(f"{name:<42} {r['status']:>6} {r['seconds']:>9.2f} {r['seconds'] / DEADLINE:>9.2f}x "
              f"{grown / 1e6:>8.1f} {grown / CAP:>5.2f}x {kept / 1e6:>8.1f}")
    server.shutdown()


if __name__ == "__main__":
    main()
