"""FHIR R4 as EHRs send it: reading codings, dates and statuses from plain JSON, validating just the
elements the rules read with fhir.resources R4B, JSON depth limits, and the client that fetches missing
prefetch data from the EHR's FHIR server within one deadline.

May import `netpolicy`, `settings` and `telemetry`; knows nothing of the pathway or of HTTP requests.
"""
