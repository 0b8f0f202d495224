"""Observability, the ground floor: one JSON log line per request without patient data, and Prometheus
metrics with bounded labels.

Imports nothing from the rest of the package; every layer may record to it.
"""
