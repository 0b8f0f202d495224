"""One hook call end to end, without HTTP: parse the request, gather prefetch (fetching what the EHR left
out from its FHIR server), read the record, evaluate the pathway and build the cards.

Both the HTTP edge and `lumbar-cds evaluate` call `hook.evaluate_hook`, so what the CLI prints is what the
EHR gets. May import `pathway`, `fhir`, `protocol`, `settings` and `telemetry`.
"""
