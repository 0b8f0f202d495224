"""schemathesis against the real Flask app (WSGI, in-process), from its own /openapi.json.

Every generated request, valid or deliberately invalid, must get a documented
status (never 5xx), the documented content type and headers, and a body that
matches the documented schema (cards, discovery, feedback receipts, OperationOutcomes).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from cds_hooks.app import create_app
from cds_hooks.sandbox.fixtures import fixtures_dir, load_fixture
from cds_hooks.service.hook import today_utc
from cds_hooks.settings.config import Settings

REPO = Path(__file__).resolve().parent.parent
EXAMPLES_PER_OPERATION = 40

# schemathesis' fixture-based loader does not work with pytest 9, so the app is
# built when the module loads, on a database that disappears with the process.
_data = tempfile.TemporaryDirectory(prefix="lumbar-cds-fuzz-")
app = create_app(Settings(data_dir=Path(_data.name), rules_dir=REPO / "rules", auto_migrate=True))
schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
schema.config.generation.update(modes=["positive", "negative"], max_examples=EXAMPLES_PER_OPERATION)


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_openapi_document(case: schemathesis.Case) -> None:
    # Every default check except "schema-valid data is accepted": CDS Hooks has rules JSON
    # Schema cannot state (selections must name draft orders, the hook must be the service's,
    # required prefetch gives 412), and the document lists those refusals as 412/422.
    case.call_and_validate(excluded_checks=[schemathesis.checks.positive_data_acceptance])


FIXTURES = sorted(fixtures_dir().glob("*.json"))


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_fixture_card_responses_conform(path: Path) -> None:
    """Generated requests rarely earn cards; the fixtures do. Their responses (cards, or
    412 OperationOutcomes) must match the document too."""
    fixture = load_fixture(path, today_utc())
    operation = schema[f"/cds-services/{fixture.service}"]["POST"]
    case = operation.Case(body=fixture.request, media_type="application/json")
    response = case.call_and_validate(excluded_checks=[schemathesis.checks.positive_data_acceptance])
    assert response.status_code == fixture.expect["status"]
