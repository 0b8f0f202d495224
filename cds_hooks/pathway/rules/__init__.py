"""The pathway's clinical content, loaded from `rules/`: schema, loading, cross-file checks, compiled lookup.

`load_rules()` reads every YAML file, validates it against `schema`, runs the
cross-file `checks`, and returns a `Rules` object whose `index` answers "which
value sets is this code in?" with a dict probe. Pure: may import only
`cds_hooks.fhir` (to build the PT-referral template as R4) besides itself. Published VSAC
expansions are imported whole by `published.import_valueset` and read back with orjson.
"""

from cds_hooks.pathway.rules.checks_budget import NOT_READ_KEYS
from cds_hooks.pathway.rules.compiled import Rules
from cds_hooks.pathway.rules.index import CodeIndex, Match, normalise
from cds_hooks.pathway.rules.load import UNVERSIONED, default_rules_dir, load_rules
from cds_hooks.pathway.rules.release import ALLOW_DRAFT_SETTING, card_extension, refusal
from cds_hooks.pathway.rules.schema import (
    ALLOWED_PREFETCH_TOKENS,
    FORMAL_PT,
    LUMBAR_SITE,
    NON_SYSTEMIC_ROUTE,
    SANDBOX_ORDER_KINDS,
    Code,
    Governance,
    RulesError,
    RuleText,
    ServiceDef,
    ValueSet,
)

__all__ = [
    "ALLOWED_PREFETCH_TOKENS",
    "ALLOW_DRAFT_SETTING",
    "FORMAL_PT",
    "LUMBAR_SITE",
    "NON_SYSTEMIC_ROUTE",
    "NOT_READ_KEYS",
    "SANDBOX_ORDER_KINDS",
    "UNVERSIONED",
    "Code",
    "CodeIndex",
    "Governance",
    "Match",
    "RuleText",
    "Rules",
    "RulesError",
    "ServiceDef",
    "ValueSet",
    "card_extension",
    "default_rules_dir",
    "load_rules",
    "normalise",
    "refusal",
]
