"""Operating the service: the `lumbar-cds` command line, the gunicorn configuration and launch, and the
committee report.

The top floor: may import every other package and `cds_hooks.app`.
"""
