"""gunicorn settings: `gunicorn -c python:cds_hooks.gunicorn_conf --bind HOST:PORT 'cds_hooks.app:create_app()'`.

The app cannot see where gunicorn binds, so the secure-default rule of `lumbar-cds serve` is applied
here, in the master, before any socket is opened: without trusted issuers, a non-loopback bind
refuses to start unless LUMBAR_CDS_INSECURE=1. gunicorn reads only the names it knows from this
module (`on_starting`), so the helpers below are not mistaken for settings.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any

from cds_hooks.auth import validate_auth_settings
from cds_hooks.config import Settings, SettingsError
from cds_hooks.exposure import ExposureRefused, startup_notice

INSECURE_ENV = "LUMBAR_CDS_INSECURE"


def bind_hosts(binds: Iterable[str]) -> list[str]:
    """Hosts of gunicorn bind strings; unix sockets are local and left out, fd:// is kept as unknown."""
    hosts = []
    for bind in binds:
        if bind.startswith("unix:"):
            continue
        if bind.startswith("["):
            hosts.append(bind[1:bind.find("]")])
        elif bind.startswith("fd://"):
            hosts.append(bind)
        else:
            hosts.append(bind.rsplit(":", 1)[0] if bind.count(":") == 1 else bind)
    if os.environ.get("LISTEN_FDS"):
        hosts.append("systemd-provided socket")  # socket activation: the address is not ours to see
    return hosts


def on_starting(server: Any) -> None:
    try:
        settings = Settings.from_env()
        validate_auth_settings(settings)
        insecure = os.environ.get(INSECURE_ENV, "").strip().lower() in ("1", "true", "yes")
        notice = startup_notice(bind_hosts(server.cfg.bind), settings.auth_enabled, insecure, f"{INSECURE_ENV}=1")
    except (SettingsError, ExposureRefused) as exc:
        raise RuntimeError(f"lumbar-cds: {exc}") from None  # gunicorn prints it and exits with status 1
    if notice:
        print(notice, file=sys.stderr, flush=True)
