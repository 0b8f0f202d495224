"""Deployment settings, the ground floor: embedded defaults, the TOML file named by LUMBAR_CDS_CONFIG,
and LUMBAR_CDS_* environment variables, checked at start-up.

Every layer reads `Settings`; this package imports only `netpolicy` (to check the FHIR allow-list).
"""
