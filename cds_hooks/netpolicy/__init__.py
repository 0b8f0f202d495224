"""Network policy, the ground floor: which URLs the service may fetch (normalisation, allow-list matching,
loopback rules) and when it may listen beyond this machine without authentication.

Pure functions over strings, with no imports from the rest of the package, so settings, security, the
FHIR client and the CLI all apply one rule.
"""
