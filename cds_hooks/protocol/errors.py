"""Errors that become HTTP responses with a FHIR OperationOutcome body."""

from __future__ import annotations

from typing import Any

# HTTP status -> OperationOutcome issue type (FHIR R4 issue-type value set).
_ISSUE_TYPE = {
    400: "structure",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    412: "incomplete",
    413: "too-costly",
    415: "not-supported",
    422: "invalid",
    500: "exception",
}


class ServiceError(Exception):
    """A request we must refuse, with a message a human can act on."""

    def __init__(self, status: int, message: str, expression: list[str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.expression = expression


def operation_outcome(status: int, message: str, expression: list[str] | None = None) -> dict[str, Any]:
    issue: dict[str, Any] = {
        "severity": "error" if status < 500 else "fatal",
        "code": _ISSUE_TYPE.get(status, "processing"),
        "diagnostics": message,
    }
    if expression:
        issue["expression"] = expression
    return {"resourceType": "OperationOutcome", "issue": [issue]}
