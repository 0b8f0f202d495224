"""R4B validation verdicts learned element by element, so that a resource built only of parts already
seen valid is known valid without running its model again.

Validating a resource part costs about 0.2 ms of pydantic and fhir_core per resource, and an audit of a
population validates millions of them, nearly all alike: the same codes, statuses, units and dates
recur, only the combination differs. The verdict of a resource's model is fixed by its parts alone
(fhir.resources R4B models on fhir_core and pydantic 2), because validating model M from a dict is:

1. `M.__init__` (fhir_core's): `resourceType` compared with M's type;
2. M's one `before` validator, `reject_null_complex_elements`: for each list-of-complex field, whether
   the value under its key holds a null: a check of each value alone;
3. each field validated from its own value: by its type, nested elements being models validated the
   same way; no validator reads another field (fhir_core's wrap validator ignores its ValidationInfo)
   and no key outside the fields is allowed (`extra="forbid"`);
4. M's one `after` validator: each required element set, at most one of each choice `x[x]` set: a
   function of which fields are set, plus, for a missing required primitive, its `_x` extension.

So a resource is valid if (a) some resource of its type with exactly its keys validated, and (b) each
of its (type, key, value) sat in a resource that validated, where it came out set (not None); provided
no key is a `_x` primitive-extension sibling (step 4 reads those together with their primitive) and no
value is null (a null in one resource and a value in another could combine into two of a choice). Its
depth is one plus its deepest value's, so the depth limit holds too. `ElementVerdicts` records (a) and
(b) from resources that validated at the first try (no repair) within the depth limit, and answers True
only when both hold; anything else is validated in full, which also gives the reason when it is not
valid. `covered(M)` checks at run time that M validates exactly as above (the same `__init__`, these two
model validators, no field validators, `extra="forbid"`), so a library update that changes that turns
the shortcut off for M rather than making it wrong. Values are compared by their orjson bytes, as the
whole-resource cache compares resources, and kept only as digests: no patient data is held.
"""

from __future__ import annotations

import hashlib
from functools import cache
from typing import Any

import orjson

from cds_hooks.fhir.limits import deeper_than

_EXTENSION_PREFIX = "_"


@cache
def covered(model: Any) -> bool:
    """Whether `model` validates as the module docstring says (checked once per model class)."""
    from fhir_core.fhirabstractmodel import FHIRAbstractModel  # slow import, needed late
    from pydantic import BaseModel

    decorators = model.__pydantic_decorators__
    validators = {name: (d.info.mode, getattr(d.func, "__func__", d.func))
                  for name, d in decorators.model_validators.items()}
    base = FHIRAbstractModel.__pydantic_decorators__.model_validators
    expected = {name: (d.info.mode, getattr(d.func, "__func__", d.func)) for name, d in base.items()}
    return (
        issubclass(model, FHIRAbstractModel)
        and model.__init__ is FHIRAbstractModel.__init__
        and model.model_post_init is BaseModel.model_post_init
        and validators == expected
        and {mode for mode, _ in validators.values()} == {"before", "after"}
        and not decorators.field_validators and not decorators.validators and not decorators.root_validators
        and model.model_config.get("extra") == "forbid"
    )


@cache
def _keys(model: Any) -> dict[str, str]:
    """JSON key → field name, for keys that name exactly one field and are not `_x` extension siblings."""
    fields = model.model_fields
    by_key = {(info.alias or name): name for name, info in fields.items()}
    renamed = {name for name, info in fields.items() if info.alias and info.alias != name}
    return {key: name for key, name in by_key.items()
            if not key.startswith(_EXTENSION_PREFIX) and key not in renamed}


class ElementVerdicts:
    """Key sets and elements seen in resources that validated at the first try, per resource type."""

    def __init__(self, limit: int = 1 << 17) -> None:
        self.limit = limit
        self.shapes: set[tuple[str, frozenset[str]]] = set()
        self.elements: set[bytes] = set()

    def clear(self) -> None:
        self.shapes.clear()
        self.elements.clear()

    @staticmethod
    def _shape(resource: dict[str, Any], model: Any) -> tuple[str, frozenset[str]] | None:
        rtype = resource.get("resourceType")
        return (rtype, frozenset(resource)) if isinstance(rtype, str) and covered(model) else None

    @staticmethod
    def _digests(resource: dict[str, Any], model: Any) -> list[bytes] | None:
        """A digest of each (type, key, value), or None when the resource is outside what this covers."""
        keys = _keys(model)
        rtype = resource["resourceType"]
        digests = []
        for key, value in resource.items():
            if key == "resourceType":
                continue
            if value is None or key not in keys:
                return None
            try:  # the JSON array [type, key, value]: one digest per element, no patient data kept
                digests.append(hashlib.blake2b(orjson.dumps((rtype, key, value)), digest_size=16).digest())
            except TypeError:  # not plain JSON (or nested past orjson's limit): validated in full
                return None
        return digests

    def known_valid(self, resource: dict[str, Any], model: Any) -> bool:
        """True only when the resource is valid by the argument above; False means "validate it"."""
        shape = self._shape(resource, model)
        if shape is None or shape not in self.shapes:
            return False
        digests = self._digests(resource, model)
        elements = self.elements
        return digests is not None and all(d in elements for d in digests)

    def learn(self, resource: dict[str, Any], model: Any, instance: Any) -> None:
        """Record a resource that validated at the first try (`instance` is what the model made of it)."""
        shape = self._shape(resource, model)
        digests = self._digests(resource, model) if shape is not None else None
        if shape is None or digests is None or deeper_than(resource):
            return
        keys = _keys(model)
        if any(getattr(instance, keys[k], None) is None for k in resource if k != "resourceType"):
            return  # a value that validated to None would change step 4: not learned
        if len(self.elements) >= self.limit or len(self.shapes) >= self.limit:
            self.clear()
        self.shapes.add(shape)
        self.elements.update(digests)
