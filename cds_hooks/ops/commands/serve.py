"""`lumbar-cds serve`: the development server, or gunicorn with the production configuration."""

from __future__ import annotations

import argparse
import dataclasses
import errno
import os
import socket
import sys

from werkzeug.serving import make_server

from cds_hooks.netpolicy.exposure import startup_notice
from cds_hooks.netpolicy.urls import is_loopback_host
from cds_hooks.ops.launch import DEFAULT_PORT, INSECURE, INSECURE_ENV, gunicorn_args
from cds_hooks.settings.config import Settings, parse_flag, read_env


def register(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser("serve", help="run the development server, or gunicorn with --production")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT)
    serve.add_argument(
        "--production", action="store_true",
        help="run gunicorn with cds_hooks.ops.gunicorn_conf (workers from CPU count; see docs/operations.md)",
    )
    serve.add_argument(
        "--insecure", action="store_true",
        help="allow a non-loopback --host without authentication (no trusted issuers configured)",
    )
    serve.set_defaults(func=_serve)


def _serve_production(args: argparse.Namespace) -> int:
    """Replace this process with gunicorn and the production configuration (`gunicorn_conf`)."""
    if _insecure(args):
        os.environ[INSECURE_ENV] = "1"  # gunicorn_conf applies the secure-default rule itself
    command = [sys.executable, "-m", "gunicorn", *gunicorn_args(args.host, args.port)]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, command)
    return 1  # not reached


def _insecure(args: argparse.Namespace) -> bool:
    """--insecure, or LUMBAR_CDS_INSECURE read as gunicorn_conf reads it (a bad value is a SettingsError)."""
    return bool(args.insecure) or read_env(INSECURE, parse_flag, False)


def _serve(args: argparse.Namespace) -> int:
    if args.production:
        return _serve_production(args)
    from cds_hooks.app import create_app

    # The embedded default stays one command: a brand-new SQLite file gets its schema here.
    settings = Settings.from_env(auto_migrate=True)
    notice = startup_notice([args.host], settings.auth_enabled, _insecure(args), f"--insecure or {INSECURE_ENV}=1")
    if notice:
        print(notice, file=sys.stderr)
    if settings.allowed_hosts is None and not settings.auth_enabled and not is_loopback_host(args.host):
        # --insecure: anyone who can reach the port may call, so the Host names need no loopback guard.
        settings = dataclasses.replace(settings, allowed_hosts=("*",))
    if settings.sandbox is None:  # development on loopback: the sandbox page is on unless LUMBAR_CDS_SANDBOX=0
        settings = dataclasses.replace(settings, sandbox=is_loopback_host(args.host) and not settings.auth_enabled)
    # Listen first: a taken port is said at once, before any start-up work, and the URLs are announced
    # only once the socket is bound, so they are this server's and not another program's.
    try:
        listening = socket.create_server((args.host, args.port), family=_family(args.host), backlog=128)
    except OSError as exc:
        print(f"error: {_bind_problem(args.host, args.port, exc)}", file=sys.stderr)
        return 2
    with listening:
        app = create_app(settings)
        server = make_server(args.host, args.port, app, threaded=True, fd=listening.fileno())
    base = f"http://{f'[{args.host}]' if ':' in args.host else args.host}:{server.port}"
    print(f"lumbar-cds: CDS Hooks discovery at {base}/cds-services", file=sys.stderr, flush=True)
    if settings.sandbox:
        print(f"lumbar-cds: scenario sandbox at {base}/sandbox", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET  # as werkzeug reads the socket it is given


def _bind_problem(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return (f"port {port} on {host} is already in use by another program, so nothing was started; stop that "
                f"program or choose another port with --port (e.g. `lumbar-cds serve --port {port + 1}`)")
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{host} is not an address of this machine, so the service cannot listen on it; check --host"
    if exc.errno == errno.EACCES:
        return f"not allowed to listen on port {port} (ports below 1024 need privileges); choose another with --port"
    return f"cannot listen on {host} port {port}: {exc.strerror or exc}"
