"""Whether a rules version may be served: its status and effective date (rules/governance.yaml).

Retired rules are never served. Draft rules, and active rules before their effective date, are served
only when the deployment allows it (LUMBAR_CDS_ALLOW_DRAFT_RULES), for review and testing before go-live.
"""

from __future__ import annotations

from datetime import date

from cds_hooks.pathway.rules.schema import Governance

ALLOW_DRAFT_SETTING = "LUMBAR_CDS_ALLOW_DRAFT_RULES"


def refusal(governance: Governance, allow_draft: bool, today: date) -> str | None:
    """Why these rules must not be served today, or None when they may be."""
    where = f"rules/governance.yaml: {governance.id} version {governance.version}"
    if governance.status == "retired":
        return f"{where} is retired; serve an active version of the rules"
    if allow_draft:
        return None
    if governance.status == "draft":
        return (f"{where} is a draft, not approved for use; record the approval and set status: active, "
                f"or set {ALLOW_DRAFT_SETTING}=1 to serve it for review")
    if governance.effective > today:
        return (f"{where} takes effect on {governance.effective.isoformat()}; "
                f"set {ALLOW_DRAFT_SETTING}=1 to serve it before then for testing")
    return None


def card_extension(governance: Governance, profile: str) -> dict[str, str]:
    """The value of the cards' rules extension (documented in docs/integration.md)."""
    return {"version": governance.version, "status": governance.status, "profile": profile}
