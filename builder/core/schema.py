"""JSON documents checked against a JSON Schema before anything in them is believed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from builder.core.errors import PfbuildError

if TYPE_CHECKING:
    import jsonschema

SHA256 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
NON_EMPTY = {"type": "string", "minLength": 1}


def _where(error: jsonschema.ValidationError) -> str:
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    return path.lstrip(".") or "the top level"


_JSON_TYPES = {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer"}


def _describe(error: jsonschema.ValidationError) -> str:
    # jsonschema quotes the whole offending value, which may be the whole document.
    if error.validator == "type":
        found = _JSON_TYPES.get(type(error.instance), type(error.instance).__name__)
        return f"expected {error.validator_value}, found {found}"
    message = error.message
    return message if len(message) <= 160 else message[:160] + "..."


def validate(document: Any, schema: Mapping[str, Any], what: str, fix: str) -> None:
    """Refuse `document` unless it matches `schema`; the first problem becomes one line."""
    # Imported here: jsonschema's format helpers take over a second to import, which every
    # pfbuild process would pay at start-up whether it validates anything or not.
    import jsonschema
    from jsonschema.exceptions import SchemaError

    try:
        validator = jsonschema.Draft202012Validator(schema)
    except SchemaError as exc:  # pragma: no cover - a schema in our code is wrong
        raise RuntimeError(f"invalid schema for {what}: {exc.message}") from None
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        message = _describe(first)
        raise PfbuildError(f"{what} is malformed", f"at {_where(first)}: {message}", fix)
