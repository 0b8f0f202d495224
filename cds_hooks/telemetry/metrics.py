"""Prometheus metrics: every metric object, and the text a scrape of /metrics returns.

Under gunicorn each worker is its own process, so counters are written to files in
PROMETHEUS_MULTIPROC_DIR (set by `cds_hooks.ops.gunicorn_conf` before any worker starts) and a
scrape, answered by whichever worker, sums them all. Without that variable (tests, `lumbar-cds
serve`) the ordinary in-process registry is used. prometheus_client picks the mode when it is
first imported, so the variable must be set before this module is imported.

Labels hold only bounded, non-patient values: service and hook ids from the rules, rule ids,
indicators, override-reason codes the rules offer, FHIR resource types from the rules'
prefetch templates, fixed failure reasons and HTTP status codes. Anything a caller could
choose freely (an unknown service id, an override code the rules never offered) is folded
into "unknown" or "other", so a caller cannot grow the label space.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNKNOWN = "unknown"
OTHER = "other"
NONE = "none"
# Decided once, like prometheus_client's own choice of value storage: a variable set later (another
# module importing gunicorn_conf in the same process) must not switch a running registry's reader.
MULTIPROCESS = bool(os.environ.get(MULTIPROC_ENV))

REQUESTS = Counter(
    "lumbar_cds_http_requests",
    "HTTP requests answered, by endpoint, CDS service, hook and status code.",
    ["endpoint", "service", "hook", "status"],
)
# Hook calls take about 1-5 ms in-process; the buckets resolve that range and the 2 s FHIR deadline.
LATENCY = Histogram(
    "lumbar_cds_http_request_duration_seconds",
    "Time from the request reaching the app to the response leaving it.",
    ["endpoint", "service"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
CARDS = Counter(
    "lumbar_cds_cards_issued",
    "Cards returned to the EHR, by service, rule and indicator.",
    ["service", "rule", "indicator"],
)
SILENCED = Counter(
    "lumbar_cds_cards_silenced",
    "Cards withheld by override memory (an earlier durable override for the same patient and rule).",
    ["service", "rule"],
)
SILENT_CARDS = Counter(
    "lumbar_cds_cards_silent",
    "Cards a service in silent mode recorded but did not return, by service, rule and indicator.",
    ["service", "rule", "indicator"],
)
FEEDBACK = Counter(
    "lumbar_cds_feedback",
    "Feedback items stored, by service, rule (unknown: a card we did not issue), outcome and override reason code.",
    ["service", "rule", "outcome", "override_reason"],
)
FHIR_QUERIES = Counter(
    "lumbar_cds_fhir_fallback_queries",
    "FHIR queries sent to the EHR's fhirServer because prefetch lacked a key, by resource type.",
    ["resource_type"],
)
FHIR_FAILURES = Counter(
    "lumbar_cds_fhir_fallback_failures",
    "FHIR fallback queries that failed, by resource type and reason (timeout, refused, server-error, ...).",
    ["resource_type", "reason"],
)
SKIPPED = Counter(
    "lumbar_cds_skipped_resources",
    "Malformed or other-patient resources the rules would have used, skipped, by service.",
    ["service"],
)
REGION_SKIPPED = Counter(
    "lumbar_cds_region_skipped",
    "Draft orders and history records whose code names no body region and whose bodySite is not lumbar, "
    "so they were not treated as lumbar, by service and kind (order, history).",
    ["service", "kind"],
)
AUTH_FAILURES = Counter(
    "lumbar_cds_auth_failures",
    "Requests refused with 401, by reason (missing-header, expired, bad-signature, ...).",
    ["reason"],
)


def exposition() -> tuple[bytes, str]:
    """The scrape body and its content type; all workers' values when in multiprocess mode."""
    if MULTIPROCESS:
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def label(value: str | None, allowed: frozenset[str] | set[str] | dict[str, object], fallback: str = UNKNOWN) -> str:
    """`value` when it is one of the known ones, else `fallback`: callers must not mint labels."""
    return value if value is not None and value in allowed else fallback


def mark_process_dead(pid: int) -> None:
    """gunicorn `child_exit`: retire a dead worker's live-gauge files (counters and histograms are kept)."""
    if MULTIPROCESS:
        from prometheus_client import multiprocess as mp

        mp.mark_process_dead(pid)
