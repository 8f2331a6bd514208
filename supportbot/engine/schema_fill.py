"""Build a JSON instance that validates against a JSON schema, filled from hints.

Covers what pydantic and OpenAI strict schemas use: objects (properties,
required), enums, const, anyOf/oneOf with null, allOf, arrays (min/max items),
strings (length, common formats), integers and numbers (bounds), booleans and
``$defs``/``$ref``. Hints are matched to properties by name; a hint that does not
fit the property's type is ignored in favour of a schema-valid default.
Patterns are not generated: a hint is used as is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

MAX_DEPTH = 8
_MISSING = object()
# Property-name spellings that mean the same hint.
ALIASES: dict[str, tuple[str, ...]] = {
    "order_ids": ("orders", "order_numbers", "related_orders"),
    "order_id": ("order", "order_number"),
    "intent_summary": ("summary", "intent", "issue", "issue_summary", "description", "subject", "title"),
    "frustration": ("frustration_level", "anger", "frustration_score"),
    "language": ("lang", "language_code", "locale"),
    "escalation_ticket_id": ("ticket_id", "escalation_id", "handoff_ticket_id"),
    "actions_taken": ("actions", "tools_used", "steps_taken"),
    "next_steps": ("next_actions", "follow_up", "followups", "recommended_actions"),
    "customer": ("customer_email", "email", "customer_ref"),
    "customer_id": ("customer_ref_id",),
    "needs_human": ("escalate", "escalated", "needs_escalation", "handoff"),
}
# Enum hint -> other words an enum may use for the same idea.
ENUM_SYNONYMS: dict[str, tuple[str, ...]] = {
    "order_status": ("order", "shipping", "delivery", "tracking", "logistics"),
    "refund": ("refund", "return", "billing", "payment"),
    "policy": ("policy", "question", "information", "general", "faq", "how_to"),
    "how_to": ("how_to", "question", "general", "faq", "policy"),
    "technical": ("technical", "bug", "tech", "product", "error"),
    "account": ("account", "login", "access", "security"),
    "billing": ("billing", "payment", "invoice", "refund"),
    "complaint": ("complaint", "escalation", "feedback"),
    "general": ("general", "other", "question", "inquiry"),
    "escalated": ("escalated", "pending_human", "handoff", "open", "pending"),
    "open": ("open", "new", "in_progress", "pending"),
    "pending_customer": ("pending_customer", "waiting", "pending", "open"),
    "resolved": ("resolved", "closed", "done", "answered", "solved"),
    "negative": ("negative", "frustrated", "angry", "upset"),
    "positive": ("positive", "happy", "satisfied"),
    "neutral": ("neutral", "calm"),
}


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def lookup_hint(hints: Mapping[str, Any], name: str) -> Any:
    """The hint for property ``name``, trying aliases; _MISSING when none."""
    table = {_norm(k): v for k, v in hints.items()}
    if _norm(name) in table:
        return table[_norm(name)]
    for canonical, others in ALIASES.items():
        names = {_norm(canonical), *(_norm(o) for o in others)}
        if _norm(name) in names:
            for candidate in names:
                if candidate in table and table[candidate] is not None:
                    return table[candidate]
    return _MISSING


class SchemaFiller:
    """Fills one schema (with its ``$defs``) from a hints mapping."""

    def __init__(self, schema: Mapping[str, Any], hints: Mapping[str, Any]) -> None:
        self.root = schema
        self.hints = hints

    def build(self) -> Any:
        """A schema-valid instance."""
        return self.value(self.root, _MISSING, self.hints, 0)

    def resolve(self, schema: Mapping[str, Any]) -> Mapping[str, Any]:
        """Follow local ``$ref``s (``#/$defs/X``, ``#/definitions/X``)."""
        seen = 0
        while "$ref" in schema and seen < 32:
            ref = schema["$ref"]
            if not ref.startswith("#"):
                return {}
            node: Any = self.root
            for part in filter(None, ref[1:].split("/")):
                node = node.get(part.replace("~1", "/").replace("~0", "~"), {})
            extra = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**node, **extra}
            seen += 1
        return schema

    def value(self, schema: Mapping[str, Any], hint: Any, scope: Mapping[str, Any], depth: int) -> Any:
        """An instance of ``schema``, using ``hint`` when it fits."""
        schema = self.resolve(schema)
        if depth > MAX_DEPTH:
            return None if self._allows_null(schema) else self._plain_default(schema)
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            return pick_enum(schema["enum"], hint, schema.get("default", _MISSING))
        if "allOf" in schema:
            merged: dict[str, Any] = {}
            for part in schema["allOf"]:
                merged.update(self.resolve(part))
            merged.update({k: v for k, v in schema.items() if k != "allOf"})
            return self.value(merged, hint, scope, depth + 1)
        options = schema.get("anyOf") or schema.get("oneOf")
        if options:
            return self._choose(options, hint, scope, depth, schema.get("default", _MISSING))
        kind = schema.get("type")
        if isinstance(kind, list):
            non_null = [k for k in kind if k != "null"]
            if (hint is _MISSING or hint is None) and "null" in kind:
                return None
            return self.value({**schema, "type": non_null[0] if non_null else "null"}, hint, scope, depth)
        if kind is None:
            kind = "object" if "properties" in schema else "array" if "items" in schema else None
        if kind == "object":
            return self._object(schema, hint, scope, depth)
        if kind == "array":
            return self._array(schema, hint, scope, depth)
        if kind is None:
            return hint if hint is not _MISSING else schema.get("default", "")
        return scalar(kind, schema, hint)

    def _choose(self, options: list, hint: Any, scope: Mapping[str, Any], depth: int, default: Any) -> Any:
        resolved = [self.resolve(o) for o in options]
        nullable = any(o.get("type") == "null" for o in resolved)
        if hint is _MISSING or hint is None:
            if nullable:
                return None if default is _MISSING else default
            return self.value(resolved[0], _MISSING, scope, depth + 1)
        for option in resolved:
            if option.get("type") != "null" and fits(option, hint):
                return self.value(option, hint, scope, depth + 1)
        if nullable:
            return None
        return self.value(resolved[0], _MISSING, scope, depth + 1)

    def _object(self, schema: Mapping[str, Any], hint: Any, scope: Mapping[str, Any], depth: int) -> dict:
        # A nested object without its own hint dict is filled from the enclosing hints.
        local = hint if isinstance(hint, Mapping) else scope
        required = set(schema.get("required", ()))
        out: dict[str, Any] = {}
        for name, sub in (schema.get("properties") or {}).items():
            h = lookup_hint(local, name)
            sub_resolved = self.resolve(sub)
            if name in required or h is not _MISSING:
                out[name] = self.value(sub_resolved, h, local, depth + 1)
            elif "default" in sub_resolved:
                out[name] = sub_resolved["default"]
        return out

    def _array(self, schema: Mapping[str, Any], hint: Any, scope: Mapping[str, Any], depth: int) -> list:
        items = schema.get("items") or {}
        lo, hi = schema.get("minItems", 0), schema.get("maxItems")
        values = list(hint) if isinstance(hint, (list, tuple)) else [] if hint is _MISSING or hint is None else [hint]
        out = [self.value(items, v, scope, depth + 1) for v in values if fits(self.resolve(items), v)]
        while len(out) < lo:
            out.append(self.value(items, _MISSING, scope, depth + 1))
        if schema.get("uniqueItems"):
            unique: list[Any] = []
            for v in out:
                if v not in unique:
                    unique.append(v)
            out = unique
        return out[:hi] if hi is not None else out

    def _allows_null(self, schema: Mapping[str, Any]) -> bool:
        kinds = schema.get("type")
        options = schema.get("anyOf") or schema.get("oneOf") or ()
        return (
            kinds == "null"
            or (isinstance(kinds, list) and "null" in kinds)
            or any(self.resolve(o).get("type") == "null" for o in options)
        )

    def _plain_default(self, schema: Mapping[str, Any]) -> Any:
        return {"object": {}, "array": []}.get(
            schema.get("type"), scalar(schema.get("type", "string"), schema, _MISSING)
        )


def fill_schema(schema: Mapping[str, Any], hints: Mapping[str, Any]) -> Any:
    """A JSON instance valid against ``schema``, filled from ``hints`` by property name."""
    return SchemaFiller(schema, hints).build()


def fits(schema: Mapping[str, Any], hint: Any) -> bool:
    """Whether ``hint`` can stand for a value of ``schema`` (after coercion)."""
    if hint is _MISSING or hint is None:
        return False
    if "enum" in schema or "const" in schema:
        return isinstance(hint, (str, int, float, bool))
    kind = schema.get("type")
    if isinstance(kind, list):
        return any(fits({**schema, "type": k}, hint) for k in kind if k != "null")
    if kind == "object" or (kind is None and "properties" in schema):
        return isinstance(hint, Mapping)
    if kind == "array":
        return isinstance(hint, (list, tuple))
    if kind == "boolean":
        return isinstance(hint, bool)
    if kind in ("integer", "number"):
        if isinstance(hint, bool):
            return False
        if isinstance(hint, (int, float)):
            return True
        return isinstance(hint, str) and re.fullmatch(r"-?\d+(\.\d+)?", hint.strip()) is not None
    if kind == "string":
        if isinstance(hint, Mapping):
            return isinstance(hint.get("text"), str)
        return isinstance(hint, (str, int, float)) and not isinstance(hint, bool)
    return True


def pick_enum(values: list, hint: Any, default: Any = _MISSING) -> Any:
    """The enum value closest to ``hint``; else the default, else the first value."""
    if hint is not _MISSING and hint is not None:
        if hint in values:
            return hint
        by_norm = {_norm(str(v)): v for v in values}
        key = _norm(str(hint))
        if key in by_norm:
            return by_norm[key]
        for word in (str(hint), *ENUM_SYNONYMS.get(str(hint).lower(), ())):
            w = _norm(word)
            for norm, v in by_norm.items():
                if w and (w == norm or w in norm or (len(norm) > 2 and norm in w)):
                    return v
        for fallback in ("other", "general", "unknown"):
            if fallback in by_norm:
                return by_norm[fallback]
    return default if default is not _MISSING and default in values else values[0]


def scalar(kind: str, schema: Mapping[str, Any], hint: Any) -> Any:
    """A string, number, integer, boolean or null honouring the schema's bounds."""
    if kind == "null":
        return None
    if kind == "boolean":
        return hint if isinstance(hint, bool) else bool(schema.get("default", False))
    if kind in ("integer", "number"):
        if fits({"type": kind}, hint):
            number: float = float(hint)
        else:
            number = schema.get("default", 0) if isinstance(schema.get("default"), (int, float)) else 0
        lo = schema.get("minimum", schema.get("exclusiveMinimum"))
        hi = schema.get("maximum", schema.get("exclusiveMaximum"))
        step = 1 if kind == "integer" else 0.001
        if lo is not None and (number < lo or ("exclusiveMinimum" in schema and number <= lo)):
            number = lo + (step if "exclusiveMinimum" in schema else 0)
        if hi is not None and (number > hi or ("exclusiveMaximum" in schema and number >= hi)):
            number = hi - (step if "exclusiveMaximum" in schema else 0)
        return int(round(number)) if kind == "integer" else float(number)
    # string
    if isinstance(hint, Mapping):  # a structured hint where text is wanted: its "text" form
        hint = hint.get("text", _MISSING)
    if isinstance(hint, (str, int, float)) and not isinstance(hint, bool):
        text = str(hint)
    elif isinstance(schema.get("default"), str):
        text = schema["default"]
    else:
        text = {
            "date-time": "1970-01-01T00:00:00Z",
            "date": "1970-01-01",
            "email": "unknown@example.com",
            "uri": "https://example.com/",
            "uuid": "00000000-0000-0000-0000-000000000000",
        }.get(schema.get("format", ""), "")
    lo, hi = schema.get("minLength", 0), schema.get("maxLength")
    if len(text) < lo:
        text = text + "-" * (lo - len(text)) if text else "n/a".ljust(lo, "-")
    return text[:hi] if hi is not None else text
