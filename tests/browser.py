"""What the browser tests share: Debian's Chromium driven by Playwright (no browser download), and a
real app served on a free 127.0.0.1 port.

Chromium and playwright are required: without them the browser tests FAIL and say how to install
them (.ci/run does). LUMBAR_CDS_SKIP_BROWSER_TESTS=1 skips them on a developer machine that has neither.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from werkzeug.serving import make_server

if TYPE_CHECKING:
    from playwright.sync_api import Browser

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "tests" / "artifacts"
CHROMIUM = Path(os.environ.get("LUMBAR_CDS_CHROMIUM", "/usr/bin/chromium"))
OPT_OUT = "LUMBAR_CDS_SKIP_BROWSER_TESTS"
# Headless Chromium as root in a container, with no calls home (real-components.md §4).
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run", "--disable-quic"]


def skip_if_opted_out() -> None:
    if os.environ.get(OPT_OUT) == "1":
        pytest.skip(f"{OPT_OUT}=1: browser tests skipped on request", allow_module_level=True)


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """Serve a WSGI app on a free loopback port for the duration; yields its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


@contextmanager
def chromium() -> Iterator[Browser]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(f"playwright is not installed: run ./dev test (it installs the test extra), "
                    f"or set {OPT_OUT}=1 to skip the browser tests")
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found: apt-get install -y chromium (as .ci/run does), "
                    f"or point LUMBAR_CDS_CHROMIUM at a Chromium, or set {OPT_OUT}=1 to skip the browser tests")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS)
        try:
            yield launched
        finally:
            launched.close()
