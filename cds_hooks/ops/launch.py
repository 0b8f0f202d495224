"""How the production server is launched: the one gunicorn command line.

`lumbar-cds serve --production`, the Dockerfile and docs/operations.md all use `gunicorn_args`;
tests/test_dockerfile.py keeps them in step. Importing this module has no side effects
(unlike `gunicorn_conf`, which prepares the metrics directory).
"""

from __future__ import annotations

DEFAULT_PORT = 8080
CONFIG_MODULE = "python:cds_hooks.gunicorn_conf"
APP_FACTORY = "cds_hooks.app:create_app()"
INSECURE = "INSECURE"  # LUMBAR_CDS_INSECURE=1: the environment's --insecure (config.parse_flag reads it)
INSECURE_ENV = f"LUMBAR_CDS_{INSECURE}"


def gunicorn_args(host: str, port: int = DEFAULT_PORT) -> list[str]:
    """gunicorn's arguments (without the program) for serving on host:port with the production configuration."""
    address = f"[{host}]" if ":" in host else host
    return ["-c", CONFIG_MODULE, "--bind", f"{address}:{port}", APP_FACTORY]
