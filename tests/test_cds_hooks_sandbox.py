"""The real CDS Hooks Sandbox (the React reference client, built) driving the service in Chromium.

Three servers on loopback, all started here: the Sandbox's static build (`../shared/tools/
cds-hooks-sandbox/build`, beside the repository; the test fails if it is missing), sekmet-fhir without
authentication (the Sandbox reads the patient's history from the browser, so it needs CORS and no
token), and the service, with and without JWT authentication (trusting the Sandbox's own public key
from the build's `.well-known/jwks.json`). The Sandbox's PAMA Imaging screen picks a lumbar MRI and a
reason exactly as a person would, through its search boxes.

Checked: the card renders with its suggestions and override menu, the PAMA rating is shown, a lumbar
fracture as a reason removes the card, Dismiss with a reason stores feedback, and accepting the
contrast suggestion changes the order. The card's rendered height is measured and printed.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import pytest

from cds_hooks.app import create_app
from cds_hooks.fhir.bundles import bundle_resources
from cds_hooks.sandbox.fixtures import load_fixture
from cds_hooks.service.hook import today_utc
from cds_hooks.settings.config import Settings
from cds_hooks.settings.types import TrustedIssuer
from tests.browser import ARTIFACTS, REPO, chromium, serving, skip_if_opted_out
from tests.sekmet import put_resources, sekmet_server

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Response

skip_if_opted_out()

SANDBOX_BUILD = REPO.parent / "shared" / "tools" / "cds-hooks-sandbox" / "build"
SANDBOX_ISSUER = "https://sandbox.cds-hooks.org"  # the iss and jku its JWTs carry (its jwt-generator)
SELECT = "lumbar-pathway-order-select"
# The Sandbox's own codings (its PAMA order and reason lists), picked by code in its search boxes.
MRI = "72148"
MRI_WITH_CONTRAST = "72158"
LOW_BACK_PAIN = "279039007"
LUMBAR_FRACTURE = "125608002"  # Fracture of lumbar spine: a red flag
# A card a clinician reads mid-order: at most about 600 px tall at the Sandbox's card width in this window.
CARD_HEIGHT_LIMIT_PX = 600
CARD_HEIGHT_ENFORCED = True
VIEWPORT = {"width": 1280, "height": 900}


def _require_build() -> Path:
    index = SANDBOX_BUILD / "index.html"
    if not index.is_file():
        pytest.fail(f"The built CDS Hooks Sandbox is missing: expected {index} (the repository's sibling "
                    "shared/tools/cds-hooks-sandbox/build). This test never skips on that: restore the build.",
                    pytrace=False)
    return SANDBOX_BUILD


class _Static(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # quiet: no request lines in the test output
        pass


@pytest.fixture(scope="module")
def sandbox_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Static, directory=str(_require_build())))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)


@dataclass
class Patient:
    id: str
    fixture: str


PREMATURE = Patient("pat-lbp-3w", "premature-mri-3-weeks")  # 3 weeks of back pain, an NSAID, no PT
AFTER_PT = Patient("pat-contrast", "mri-with-contrast-after-pt")  # 12 weeks of back pain, 8 weeks of PT


@pytest.fixture(scope="module")
def fhir_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """sekmet-fhir holding both patients' histories (the fixtures' prefetch, dates resolved), open to read."""
    with sekmet_server(tmp_path_factory.mktemp("sekmet-open"), open_access=True) as base:
        for patient in (PREMATURE, AFTER_PT):
            fixture = load_fixture(REPO / "fixtures" / f"{patient.fixture}.json", today_utc())
            assert fixture.request["context"]["patientId"] == patient.id
            history = [r for v in fixture.request["prefetch"].values() if v for r in bundle_resources(v)]
            assert len(put_resources(base, history)) == len(history)
        yield base


class LateApp:
    """A WSGI app chosen after the port is bound: with JWT authentication on, the service must know its
    own public URL (each token's `aud`), which exists only once the server listens."""

    def __init__(self) -> None:
        self.app: Any = None

    def __call__(self, environ: Any, start_response: Any) -> Any:
        return self.app(environ, start_response)


@dataclass
class Service:
    url: str
    database: Path
    authenticated: bool


@pytest.fixture(params=["no-auth", "jwt"], scope="module")
def service(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    data = tmp_path_factory.mktemp(f"service-{request.param}") / "data"
    late = LateApp()
    with serving(late) as url:
        settings = Settings(data_dir=data, rules_dir=REPO / "rules", auto_migrate=True, log_level="WARNING")
        if request.param == "jwt":
            # The Sandbox's FHIR server (sekmet) is on this machine: loopback is allowed explicitly.
            sandbox_key = TrustedIssuer(iss=SANDBOX_ISSUER, jwks=str(_require_build() / ".well-known" / "jwks.json"),
                                        jku=(f"{SANDBOX_ISSUER}/.well-known/jwks.json",))
            settings = Settings(**{**settings.__dict__, "public_base_url": url, "fhir_allow_loopback": True,
                                   "auth_issuers": (sandbox_key,)})
        late.app = create_app(settings)
        assert ("lumbar_cds.verifier" in late.app.extensions) == (request.param == "jwt")
        yield Service(url, data / "lumbar-cds.sqlite3", request.param == "jwt")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@dataclass
class Screen:
    """The Sandbox's PAMA Imaging screen for one patient, and every answer the service gave it."""

    page: Page
    answers: list[Response]
    errors: list[str]

    def latest(self) -> dict[str, Any]:
        return self.answers[-1].json()

    def pick(self, box: int, code: str) -> dict[str, Any]:
        """Type a code into a search box (0: orders, 1: reasons), choose the one match; the Sandbox fires
        order-select. Returns the service's answer."""
        field = self.page.locator("input[id^='react-select-'][id$='-input']").nth(box)
        field.fill(code)
        self.page.locator("[class*='-option']").first.wait_for()
        with self.page.expect_response(_service_post) as answer:
            field.press("Enter")
        assert answer.value.status == 200, answer.value.text()
        return answer.value.json()

    def remove_reason(self, display: str) -> dict[str, Any]:
        with self.page.expect_response(_service_post) as answer:
            self.page.locator("li", has_text=display).get_by_title("Remove").click()
        assert answer.value.status == 200
        return answer.value.json()

    def rating(self) -> str:
        return self.page.locator("[class*='rating-box']").inner_text()

    def cards(self) -> Any:
        return self.page.locator("[class*='decision-card']")


def _service_post(response: Response) -> bool:
    return response.request.method == "POST" and response.url.endswith(f"/cds-services/{SELECT}")


def _feedback_post(response: Response) -> bool:
    return response.request.method == "POST" and response.url.endswith(f"/cds-services/{SELECT}/feedback")


@pytest.fixture
def open_screen(browser: Browser, sandbox_url: str, fhir_server: str, service: Service) -> Iterator[
        Callable[[Patient], Screen]]:
    contexts = []
    screens: list[Screen] = []

    def open_(patient: Patient) -> Screen:
        context = browser.new_context(viewport=VIEWPORT)
        contexts.append(context)
        page = context.new_page()
        screen = Screen(page, [], [])
        page.on("pageerror", lambda exc: screen.errors.append(str(exc)))
        page.on("response", lambda r: screen.answers.append(r) if _service_post(r) else None)
        query = urlencode({"fhirServiceUrl": fhir_server, "patientId": patient.id, "screen": "pama",
                           "hook": "order-select", "serviceDiscoveryURL": f"{service.url}/cds-services"},
                          quote_via=quote)
        with page.expect_response(_service_post):  # the screen fires once on load, with no order yet
            page.goto(f"{sandbox_url}/?{query}")
        page.locator("[class*='rating-box']").wait_for()
        screens.append(screen)
        return screen

    yield open_
    for context in contexts:
        context.close()
    for screen in screens:
        assert screen.errors == [], "the Sandbox threw on our answers"
        assert all(a.status == 200 for a in screen.answers), "every call was answered (and, with JWT, accepted)"


def feedback_rows(service: Service, card_uuid: str) -> list[dict[str, Any]]:
    with sqlite3.connect(service.database) as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM feedback WHERE card_uuid = ? ORDER BY id", (card_uuid,))]


def report_height(name: str, height: float, capsys: pytest.CaptureFixture[str]) -> None:
    line = f"card height in the CDS Hooks Sandbox ({name}, {VIEWPORT['width']} px wide window): {height:.0f} px"
    with capsys.disabled():
        print(f"\n{line} (target at most {CARD_HEIGHT_LIMIT_PX} px)")
    (ARTIFACTS / f"cds-hooks-sandbox-{name}.txt").write_text(line + "\n")
    if CARD_HEIGHT_ENFORCED:
        assert height <= CARD_HEIGHT_LIMIT_PX, line


def test_premature_mri_card_rating_red_flag_and_dismiss(
    open_screen: Callable[[Patient], Screen], service: Service, capsys: pytest.CaptureFixture[str],
) -> None:
    screen = open_screen(PREMATURE)
    page = screen.page
    assert "PAMA Rating: unknown" in screen.rating()  # no order yet: nothing to rate
    screen.pick(0, MRI)
    answer = screen.pick(1, LOW_BACK_PAIN)

    [card] = answer["cards"]
    assert card["source"]["topic"]["code"] == "imaging-premature"
    shown = screen.cards()
    assert shown.count() == 1
    assert shown.get_by_role("button", name="Replace with physical-therapy referral").is_visible()
    assert shown.get_by_role("button", name="Remove the order").is_visible()
    assert "not-appropriate" in screen.rating()
    height = shown.bounding_box()["height"]  # type: ignore[index]
    report_height(f"premature-mri-{'jwt' if service.authenticated else 'no-auth'}", height, capsys)
    shown.screenshot(path=str(ARTIFACTS / "cds-hooks-sandbox-premature-mri.png"))
    # The whole basis is one click away: the card's first link, a page that needs no JWT (a click has none).
    basis = card["links"][0]
    assert basis["type"] == "absolute" and shown.get_by_role("button", name=basis["label"]).is_visible()
    opened = page.request.get(basis["url"])
    assert opened.status == 200 and "What was checked" in opened.text()
    # The override menu: one entry per reason the card offers.
    shown.get_by_role("button", name="select dismiss reason").click()
    offered = page.get_by_role("menuitem").all_inner_texts()
    assert offered == [f"Override: {r['display']}" for r in card["overrideReasons"]]
    page.keyboard.press("Escape")

    # A lumbar fracture as a second reason is a red flag: the card goes, and the order is appropriate.
    flagged = screen.pick(1, LUMBAR_FRACTURE)
    assert flagged["cards"] == []
    shown.first.wait_for(state="detached")
    assert "appropriate" in screen.rating() and "not-appropriate" not in screen.rating()
    back = screen.remove_reason("Fracture of lumbar spine")
    [card] = back["cards"]
    shown.first.wait_for()
    assert "not-appropriate" in screen.rating()

    # Dismiss with a reason: the Sandbox posts feedback (a bare code, no display) and hides the card.
    shown.get_by_role("button", name="select dismiss reason").click()
    with page.expect_response(_feedback_post) as stored:
        page.get_by_role("menuitem", name="Override: Conservative care completed outside this record").click()
    assert stored.value.status == 200 and stored.value.json() == {"stored": 1, "unknownCards": 0}
    [row] = feedback_rows(service, card["uuid"])
    assert (row["outcome"], row["known_card"], row["rule_id"], row["override_code"], row["override_display"]) == (
        "overridden", 1, "imaging-premature", "conservative-care-elsewhere", None)
    shown.first.wait_for(state="detached")
    # With authentication on, every one of those calls was a verified token, and each used up its jti.
    with sqlite3.connect(service.database) as db:
        used = db.execute("SELECT count(*) FROM jti_seen WHERE iss = ?", (SANDBOX_ISSUER,)).fetchone()[0]
    assert used >= len(screen.answers) if service.authenticated else used == 0


def test_accepting_the_contrast_suggestion_changes_the_order(
    open_screen: Callable[[Patient], Screen], service: Service, capsys: pytest.CaptureFixture[str],
) -> None:
    screen = open_screen(AFTER_PT)
    page = screen.page
    screen.pick(0, MRI_WITH_CONTRAST)
    answer = screen.pick(1, LOW_BACK_PAIN)
    [card] = answer["cards"]
    assert card["source"]["topic"]["code"] == "imaging-contrast"
    shown = screen.cards()
    button = shown.get_by_role("button", name="Change to MRI lumbar spine without contrast")
    report_height(f"contrast-{'jwt' if service.authenticated else 'no-auth'}", shown.bounding_box()["height"],
                  capsys)  # type: ignore[index]
    before = page.locator("[class*='current-selection']").first.inner_text()
    assert "without contrast material, followed by contrast" in before

    with page.expect_response(_feedback_post) as stored, page.expect_response(_service_post) as refired:
        button.click()
    assert stored.value.status == 200
    # The Sandbox applied the update: the order is now the study without contrast, and it asked again.
    sent = json.loads(refired.value.request.post_data or "{}")
    draft = sent["context"]["draftOrders"]["entry"][0]["resource"]
    assert draft["code"]["coding"][0]["code"] == MRI
    after = page.locator("[class*='current-selection']").first
    assert after.inner_text() != before and "without contrast" in after.inner_text()
    assert refired.value.json()["cards"] == []
    shown.first.wait_for(state="detached")
    assert "appropriate" in screen.rating() and "not-appropriate" not in screen.rating()
    [row] = feedback_rows(service, card["uuid"])
    assert (row["outcome"], json.loads(row["accepted_suggestions"])) == ("accepted", [card["suggestions"][0]["uuid"]])

