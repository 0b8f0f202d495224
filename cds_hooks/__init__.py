"""lumbar-pathway-cds: a CDS Hooks 2.0 service for the lumbar conservative-care pathway.

A hook call flows inwards: `http/` (the Flask edge) → `service/` (one hook call:
prefetch, fallback fetch) → `fhir/` (reading and fetching FHIR) → `pathway/`
(pure: rules, patient record, evaluation, cards) → back out as a CDS Hooks
response (`protocol/`). Around it: `store/` (database), `security/` (JWT),
`sandbox/` (developer page), `ops/` (CLI, gunicorn, report). At the ground
floor, read by every layer: `settings/`, `telemetry/` (logs, metrics) and
`netpolicy/` (which URLs may be fetched). Imports point downwards only;
tests/test_layout.py enforces the order.

Two modules sit at the top as stable entry points: `app.py` (the WSGI factory
`cds_hooks.app:create_app`, which wires the packages together) and
`gunicorn_conf.py` (`-c python:cds_hooks.gunicorn_conf`).
"""

__version__ = "0.1.0"
