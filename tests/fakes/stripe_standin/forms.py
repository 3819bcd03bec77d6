"""Form and query-string parsing with Stripe's bracket notation, and typed reads of the result.

The stripe SDK sends `line_items[0][price]=p&metadata[tenant_id]=t&expand[0]=x` (and
`expand[]=x` from other clients); this turns that into nested dicts and lists.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl

from .errors import StripeError

_SEGMENT = re.compile(r"\[([^\[\]]*)\]")


def _split_key(key: str) -> list[str]:
    head, bracket, _ = key.partition("[")
    if not bracket:
        return [key]
    rest = key[len(head):]
    parts = _SEGMENT.findall(rest)
    if "".join(f"[{p}]" for p in parts) != rest:  # malformed, e.g. `a[b` — keep it literal
        return [key]
    return [head, *parts]


def _listify(node: Any) -> Any:
    """Turn dicts keyed only by indexes ("0", "1", ...) into lists, depth first."""
    if not isinstance(node, dict):
        return node
    for k, v in node.items():
        node[k] = _listify(v)
    if node and all(k.isdigit() for k in node):
        return [node[k] for k in sorted(node, key=int)]
    return node


def parse_pairs(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Nest (key, value) pairs by their brackets; `[]` appends, `[3]` indexes, `[name]` keys."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        parts = _split_key(key)
        node = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if part == "":
                part = str(len(node))  # `[]`: the next index
            if last:
                node[part] = value
            else:
                child = node.get(part)
                if not isinstance(child, dict):
                    child = {}
                    node[part] = child
                node = child
    return _listify(root)


def parse_form(text: str) -> dict[str, Any]:
    """Parse an `application/x-www-form-urlencoded` body or a query string."""
    return parse_pairs(parse_qsl(text, keep_blank_values=True))


def parse_body(raw: bytes, content_type: str) -> dict[str, Any]:
    """Parse a request body: form-encoded (what the SDK sends) or JSON (handy for test calls)."""
    if not raw:
        return {}
    text = raw.decode("utf-8")
    if content_type.startswith("application/json"):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise StripeError.invalid(f"Invalid JSON body: {exc}") from None
        if not isinstance(data, dict):
            raise StripeError.invalid("The JSON body must be an object.")
        return data
    return parse_form(text)


# Typed reads. Values arrive as strings from forms and as native types from JSON.

def opt_str(params: dict[str, Any], name: str) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, (str, int)):
        raise StripeError.invalid(f"Invalid string: {name}", param=name)
    return str(value)


def req_str(params: dict[str, Any], name: str) -> str:
    value = opt_str(params, name)
    if value is None:
        raise StripeError.invalid(f"Missing required param: {name}.", param=name, code="parameter_missing")
    return value


def opt_int(params: dict[str, Any], name: str) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise StripeError.invalid(f"Invalid integer: {value}", param=name, code="parameter_invalid_integer")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise StripeError.invalid(
            f"Invalid integer: {value}", param=name, code="parameter_invalid_integer"
        ) from None


def req_int(params: dict[str, Any], name: str) -> int:
    value = opt_int(params, name)
    if value is None:
        raise StripeError.invalid(f"Missing required param: {name}.", param=name, code="parameter_missing")
    return value


def opt_bool(params: dict[str, Any], name: str) -> bool | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "1"):
        return True
    if str(value).lower() in ("false", "0"):
        return False
    raise StripeError.invalid(f"Invalid boolean: {value}", param=name, code="parameter_invalid_boolean")


def opt_dict(params: dict[str, Any], name: str) -> dict[str, Any]:
    value = params.get(name)
    if value is None or value == "":
        return {}
    if not isinstance(value, dict):
        raise StripeError.invalid(f"Invalid object: {name}", param=name)
    return value


def opt_list(params: dict[str, Any], name: str) -> list[Any]:
    value = params.get(name)
    if value is None or value == "":
        return []
    if isinstance(value, dict):  # sparse indexes such as items[1] alone
        return [value[k] for k in sorted(value, key=lambda k: int(k) if k.isdigit() else 0)]
    if not isinstance(value, list):
        raise StripeError.invalid(f"Invalid array: {name}", param=name)
    return value


def expand_paths(params: dict[str, Any]) -> list[str]:
    return [str(p) for p in opt_list(params, "expand")]


def merge_metadata(current: dict[str, str], params: dict[str, Any]) -> dict[str, str]:
    """Stripe's metadata update: keys merge, an empty value unsets a key, `metadata=""` clears all."""
    if "metadata" not in params:
        return current
    value = params["metadata"]
    if value == "" or value is None:
        return {}
    if not isinstance(value, dict):
        raise StripeError.invalid("Invalid object: metadata", param="metadata")
    merged = dict(current)
    for k, v in value.items():
        if v == "" or v is None:
            merged.pop(k, None)
        else:
            merged[str(k)] = str(v)
    return merged
