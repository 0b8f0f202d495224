"""Count every HTTP request and serve /metrics; the domain counters are bumped where things happen."""

from __future__ import annotations

import time

from flask import Flask, Response, g, request

from cds_hooks.pathway.rules import Rules
from cds_hooks.telemetry import metrics

# Flask endpoint names are fixed by the code; a path matching no route is "none".
_ENDPOINT_PREFIX = "cds_hooks."
METRICS_ENDPOINT = "metrics"  # an app route: Flask forbids dots in its name


def install_metrics(app: Flask, rules: Rules, enabled: bool) -> None:
    """Count and time every request, 401s and preflights included. The start time is the request
    log's (logs.install runs first), so both report the same duration."""

    @app.after_request
    def _count(response: Response) -> Response:
        started = g.get("request_started")
        endpoint = (request.endpoint or metrics.NONE).removeprefix(_ENDPOINT_PREFIX)
        service_id = (request.view_args or {}).get("service_id")
        service = rules.services.get(service_id) if service_id else None
        service_label = service.id if service else (metrics.UNKNOWN if service_id else metrics.NONE)
        hook = service.hook if service else metrics.NONE
        metrics.REQUESTS.labels(endpoint, service_label, hook, str(response.status_code)).inc()
        if started is not None:
            metrics.LATENCY.labels(endpoint, service_label).observe(time.perf_counter() - started)
        return response

    if not enabled:
        return

    @app.get("/metrics", endpoint=METRICS_ENDPOINT)
    def _metrics() -> Response:
        body, content_type = metrics.exposition()
        return Response(body, status=200, content_type=content_type)
