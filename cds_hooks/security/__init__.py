"""Who may call the service: CDS Hooks JWT verification (issuers, algorithms, claims, replay) and JWK Set
fetching and caching.

Framework-free: `http/auth.py` plugs it into Flask. May import `settings`, `netpolicy` and `telemetry`.
"""
