"""A real FHIR R4 server for tests and benchmarks: sekmet-fhir 0.1.1 on 127.0.0.1.

sekmet pins its own web stack, so it lives in its own virtual environment
(`./dev test` installs it into .venv-sekmet). It validates every write with
fhir.resources R4B, stores in SQLite and supports paging and bearer auth.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from cds_hooks.fhir.fetch import template_resource_type
from cds_hooks.pathway.rules import ServiceDef

REPO = Path(__file__).resolve().parent.parent
SEKMET = Path(os.environ.get("LUMBAR_CDS_SEKMET", REPO / ".venv-sekmet" / "bin" / "sekmet"))
TOKEN = "sekmet-test-token-7f3a9c"  # the only bearer token the test server accepts


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def sekmet_server(workdir: Path, token: str = TOKEN, open_access: bool = False,
                  auth: str | None = None) -> Iterator[str]:
    """Start sekmet with bearer auth (or, with `open_access`, none: a browser client such as the CDS Hooks
    Sandbox reads it without a token) and its order simulator off; yield the FHIR base URL. `auth` replaces
    the `server_auth` setting (YAML flow style), e.g. to add SMART clients."""
    if not SEKMET.exists():
        raise RuntimeError(
            f"sekmet-fhir is not installed at {SEKMET}. `./dev test` installs it "
            "(python3 -m venv .venv-sekmet && .venv-sekmet/bin/pip install sekmet-fhir==0.1.1)."
        )
    port = free_port()
    base = f"http://127.0.0.1:{port}/fhir"
    settings = workdir / "sekmet.yaml"
    # The simulator would act on ServiceRequests we load; the server must only store them.
    if auth is None:
        auth = "{types: [none]}" if open_access else f"{{types: [bearer], tokens: [{token}]}}"
    settings.write_text(
        f"base_url: {base}\nhost: 127.0.0.1\nport: {port}\ndata_dir: {workdir / 'data'}\n"
        f"log_inbound: false\nsimulator: {{enabled: false}}\nserver_auth: {auth}\n"
    )
    log = (workdir / "sekmet.log").open("wb")
    proc = subprocess.Popen(
        [str(SEKMET), "serve"], env={**os.environ, "SEKMET_CONFIG": str(settings)},
        stdout=log, stderr=subprocess.STDOUT, cwd=workdir,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"sekmet exited with {proc.returncode}; see {workdir / 'sekmet.log'}")
            try:
                if httpx.get(f"{base}/metadata", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"sekmet did not start in 90 s; see {workdir / 'sekmet.log'}")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def rename_ids(value: Any, prefix: str, ids: set[str]) -> Any:
    """Give every resource id in `ids` (and references to it) a prefix, so
    each scenario's history lives under its own ids on one shared server."""
    if isinstance(value, dict):
        out = {k: rename_ids(v, prefix, ids) for k, v in value.items()}
        if isinstance(out.get("id"), str) and out["id"] in ids and "resourceType" in out:
            out["id"] = prefix + out["id"]
        ref = out.get("reference")
        if isinstance(ref, str) and "/" in ref:
            rtype, _, rid = ref.rpartition("/")
            if rid in ids:
                out["reference"] = f"{rtype}/{prefix}{rid}"
        return out
    if isinstance(value, list):
        return [rename_ids(v, prefix, ids) for v in value]
    return value


def full_prefetch(service: ServiceDef, resources: list[dict[str, Any]]) -> dict[str, Any]:
    """What an EHR satisfying every template would send, given the resources its server holds:
    a searchset Bundle per search key, the resource (or null) per read key."""
    full: dict[str, Any] = {}
    for key, template in service.prefetch.items():
        matching = [r for r in resources if r["resourceType"] == template_resource_type(template)]
        if "?" in template:
            full[key] = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in matching]}
        else:
            full[key] = matching[0] if matching else None
    return full


def put_resources(base: str, resources: list[dict[str, Any]], token: str = TOKEN) -> list[dict[str, Any]]:
    """PUT each resource under its own id; return those the server accepted.
    sekmet validates with R4B, so deliberately broken records are refused."""
    accepted = []
    with httpx.Client(headers={"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"},
                      timeout=30) as client:
        for res in resources:
            response = client.put(f"{base}/{res['resourceType']}/{res['id']}", json=res)
            if response.status_code in (200, 201):
                accepted.append(res)
    return accepted
