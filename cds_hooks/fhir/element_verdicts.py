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
model validators, no field validators, `extra="forbid"`, no other setting that changes how a field's
value validates), so a library update that changes that turns the shortcut off for M rather than making
it wrong. Values are compared by their orjson bytes, as the whole-resource cache compares resources, and
kept only as digests: no patient data is held.

A value not seen yet in a resource of a known key set (each patient's own `subject` reference, a new
date) is validated alone, as step 3 does: with the field's own type and constraints (`TypeAdapter` of its
annotation), about 10 µs against 0.2 ms for the whole resource. Valid, set and within the depth limit,
it is learned as (b); otherwise the resource is validated in full. A resource with more than
`ALONE_MAX` such values is validated in full at once (then each alone would cost more than the whole).
What step 3 decides for a value depends only on the field's annotation, so a value found valid (and set,
within the depth limit) as one field, alone or in a resource that validated, is also kept as a digest of
(the annotation's number, value): a field with an equal annotation takes it without validating it again,
in any resource type (a patient's `subject` in their Conditions, Procedures and orders; a date in every
dateTime).

The comparison by bytes assumes JSON data as `orjson.loads` makes it (every caller's input). Two Python
values orjson writes alike would otherwise pass for each other: NaN and infinities are written `null`
(and the R4B Decimal refuses them), dates as strings, subclasses as their base. `plain_json` therefore
refuses dates, dataclasses and subclasses, and any value whose bytes hold `null` is validated in full
(the whole-resource cache uses it too). Memory is bounded: at most `limit` digests of 16 bytes (of both kinds)
and `limit // 32` key sets (each a bit mask), about 11 MiB per process at the default; past either, both
are forgotten and learned again, so a hostile or huge export cannot grow them.
"""

from __future__ import annotations

import hashlib
import itertools
from functools import cache
from typing import Annotated, Any

import orjson
from pydantic import TypeAdapter, ValidationError

from cds_hooks.fhir.limits import deeper_than

_EXTENSION_PREFIX = "_"
ALONE_MAX = 3  # values validated one by one before the whole resource is cheaper
# Model settings that do not change how a field's value validates (they act on the model as a whole).
_MODEL_ONLY_SETTINGS = {"extra", "validate_assignment", "populate_by_name"}
# Refuse what orjson would write like plain JSON: dates, dataclasses, subclasses of str, int, dict, list.
_STRICT = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS


def plain_json(value: Any) -> bytes | None:
    """orjson's bytes for `value` when they identify it among JSON values, else None: not serialisable,
    not plain JSON, or holding `null`, which NaN and the infinities are written as too."""
    try:
        data = orjson.dumps(value, option=_STRICT)
    except TypeError:  # orjson.JSONEncodeError is one; also nested past orjson's limit
        return None
    return None if b"null" in data else data


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
        and set(model.model_config) <= _MODEL_ONLY_SETTINGS
    )


@cache
def _keys(model: Any) -> dict[str, tuple[str, int]]:
    """JSON key → (field name, its bit in a key set's mask), for keys that name exactly one field and
    are not `_x` extension siblings."""
    fields = model.model_fields
    by_key = {(info.alias or name): name for name, info in fields.items()}
    renamed = {name for name, info in fields.items() if info.alias and info.alias != name}
    kept = [(key, name) for key, name in by_key.items() if not key.startswith(_EXTENSION_PREFIX) and key not in renamed]
    return {key: (name, 1 << bit) for bit, (key, name) in enumerate(kept)}


_NUMBERS = itertools.count()  # a field type's number, for the typed digests


@cache
def _field_type(model: Any, name: str) -> tuple[int, TypeAdapter[Any]]:
    """The validator step 3 runs on the field's value (its annotation with its constraints), and its
    number: fields of equal annotations (every dateTime, most `subject`s) share one, as they validate a
    value alike."""
    info = model.model_fields[name]
    annotation = Annotated[info.annotation, *info.metadata] if info.metadata else info.annotation
    try:
        return _validator(annotation)
    except TypeError:  # unhashable: a number of its own
        return next(_NUMBERS), TypeAdapter(annotation)


@cache
def _validator(annotation: Any) -> tuple[int, TypeAdapter[Any]]:
    return next(_NUMBERS), TypeAdapter(annotation)


def _valid_alone(model: Any, key: str, value: Any) -> bool:
    """Whether the value validates, and comes out set, as the field under `key` (see the docstring)."""
    if deeper_than({key: value}):  # the resource's depth is its deepest value's plus one, as here
        return False
    try:
        return _field_type(model, _keys(model)[key][0])[1].validate_python(value) is not None
    except (ValidationError, TypeError, ValueError):
        return False


def _typed(model: Any, key: str, value: Any) -> bytes:
    """A digest of (the field's type, value): a value known valid as one field is valid as any field of
    its type, in any resource type. Asked only of an element `_parts` digested, so the value is plain JSON."""
    data = plain_json((_field_type(model, _keys(model)[key][0])[0], value))  # [number, value]: no element's
    assert data is not None  # [type, key, value] was plain JSON, and a number beside the value holds no null
    return hashlib.blake2b(data, digest_size=16).digest()


class ElementVerdicts:
    """Key sets and elements seen in resources that validated at the first try, per resource type."""

    def __init__(self, limit: int = 1 << 17) -> None:
        self.limit = limit
        self.shapes: set[tuple[str, int]] = set()  # (resource type, mask of its keys)
        self.elements: set[bytes] = set()

    def clear(self) -> None:
        self.shapes.clear()
        self.elements.clear()

    @staticmethod
    def _parts(resource: dict[str, Any], model: Any) -> tuple[tuple[str, int], list[bytes]] | None:
        """The resource's key set and a digest of each (type, key, value), or None when the resource is
        outside what this covers."""
        rtype = resource.get("resourceType")
        if not isinstance(rtype, str) or not covered(model):
            return None
        keys = _keys(model)
        mask = 0
        digests = []
        for key, value in resource.items():
            if key == "resourceType":
                continue
            known = keys.get(key)
            if value is None or known is None:
                return None
            data = plain_json((rtype, key, value))  # the JSON array [type, key, value]
            if data is None:
                return None
            mask |= known[1]
            digests.append(hashlib.blake2b(data, digest_size=16).digest())  # no patient data kept
        return (rtype, mask), digests

    def known_valid(self, resource: dict[str, Any], model: Any) -> bool:
        """True only when the resource is valid by the argument above; False means "validate it"."""
        parts = self._parts(resource, model)
        if parts is None or parts[0] not in self.shapes:
            return False
        elements = self.elements
        new = [i for i, digest in enumerate(parts[1]) if digest not in elements]
        if not new:
            return True
        if len(new) > ALONE_MAX:
            return False
        items = [(k, v) for k, v in resource.items() if k != "resourceType"]  # in the order of the digests
        learned = [parts[1][i] for i in new]
        for i in new:
            typed = _typed(model, *items[i])
            if typed not in elements:
                if not _valid_alone(model, *items[i]):
                    return False
                learned.append(typed)
        self._remember(None, learned)
        return True

    def learn(self, resource: dict[str, Any], model: Any, instance: Any) -> None:
        """Record a resource that validated at the first try (`instance` is what the model made of it)."""
        parts = self._parts(resource, model)
        if parts is None or deeper_than(resource):
            return
        keys = _keys(model)
        if any(getattr(instance, keys[k][0], None) is None for k in resource if k != "resourceType"):
            return  # a value that validated to None would change step 4: not learned
        typed = [_typed(model, k, v) for k, v in resource.items() if k != "resourceType"]
        self._remember(parts[0], parts[1] + typed)

    def _remember(self, shape: tuple[str, int] | None, digests: list[bytes]) -> None:
        if len(self.elements) + len(digests) > self.limit or len(self.shapes) >= self.limit // 32:
            self.clear()
        if shape is not None:
            self.shapes.add(shape)
        self.elements.update(digests)
