"""Check requests and responses against the vendored Gitea 1.26.3 Swagger 2.0 spec.

Why: the double is only useful if it speaks the real contract, and the product's client is
only correct if what it sends is declared by the real API (Gitea silently ignores unknown
JSON fields and query parameters, so a typo there is a silent bug, not an error).

Swagger 2.0 schemas are close to JSON Schema draft 4, so `jsonschema.Draft4Validator` is
used on the definitions after two adjustments documented in docs/gitea-api.md §6:
fields Gitea sends as null although the spec does not say so are made nullable, and error
responses (which the spec describes only as headers) are checked against Gitea's real
`{"message","url"[,"errors"]}` body.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from jsonschema import Draft4Validator, FormatChecker  # type: ignore[import-untyped]
from jsonschema.exceptions import ValidationError  # type: ignore[import-untyped]

SPEC_PATH = Path(__file__).with_name("gitea-openapi-v1.json")
BASE_PATH = "/api/v1"

NULLABLE: Mapping[str, frozenset[str]] = {
    "Issue": frozenset(
        {"closed_at", "milestone", "assignee", "assignees", "pull_request", "due_date"}
    ),
    "PullRequestMeta": frozenset({"merged_at"}),
    "Milestone": frozenset({"closed_at", "due_on"}),
    "Repository": frozenset(
        {
            "parent",
            "repo_transfer",
            "external_tracker",
            "external_wiki",
            "internal_tracker",
            "permissions",
            "topics",
            "licenses",
        }
    ),
}
"""Fields real Gitea sends as null (Go pointers / nil slices) that the spec leaves unmarked."""

QUERY_AUTH_PARAMS = frozenset({"token", "access_token", "sudo"})
"""Query parameters declared globally by the spec's securityDefinitions."""

_GO_BOOLS = frozenset(
    {"1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False"}
)
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")

_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["message", "url"],
    "properties": {
        "message": {"type": "string"},
        "url": {"type": "string"},
        "errors": {"type": ["array", "null"], "items": {"type": "string"}},
    },
}


class SpecError(AssertionError):
    """A request or response that does not match the Gitea spec."""


@functools.cache
def load_spec() -> dict[str, Any]:
    """The vendored spec (see README.md for provenance)."""
    with SPEC_PATH.open(encoding="utf-8") as handle:
        spec: dict[str, Any] = json.load(handle)
    return spec


def _format_checker() -> FormatChecker:
    """Draft-4 formats plus a strict RFC 3339 `date-time` (no extra package needed)."""

    def is_datetime(value: object) -> bool:
        return not isinstance(value, str) or bool(_RFC3339.match(value))

    checker = FormatChecker()
    checker.checks("date-time")(is_datetime)
    return checker


FORMATS = _format_checker()


@functools.cache
def _definitions(require_all: bool, no_extra: bool) -> dict[str, Any]:
    """Spec definitions with nullable fixes; optionally every property required/no extras."""
    definitions: dict[str, Any] = copy.deepcopy(load_spec()["definitions"])
    for name, schema in definitions.items():
        props: dict[str, Any] = schema.get("properties", {})
        for prop, sub in props.items():
            if prop in NULLABLE.get(name, ()) or sub.get("x-nullable"):
                props[prop] = {"anyOf": [sub, {"type": "null"}]}
        if schema.get("type") == "object" and props:
            if require_all:
                schema["required"] = sorted(props)
            if no_extra:
                schema["additionalProperties"] = False
    return definitions


@functools.lru_cache(maxsize=256)
def _validator(schema_json: str, require_all: bool, no_extra: bool) -> Draft4Validator:
    """A validator whose document carries the definitions, so local $refs resolve.

    Cached per schema (as canonical JSON text): building one and resolving its $refs the
    first time is most of the cost.
    """
    document = {**json.loads(schema_json), "definitions": _definitions(require_all, no_extra)}
    return Draft4Validator(document, format_checker=FORMATS)


def _check(schema: Mapping[str, Any], value: Any, where: str, **variant: bool) -> None:
    validator = _validator(
        json.dumps(schema, sort_keys=True),
        variant.get("require_all", False),
        variant.get("no_extra", False),
    )
    errors = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
    if errors:
        raise SpecError(f"{where}: " + "; ".join(_describe(e) for e in errors[:5]))


def _describe(error: ValidationError) -> str:
    path = "/".join(str(p) for p in error.absolute_path) or "<root>"
    return f"at {path}: {error.message[:300]}"


def _split_path(path: str) -> list[str]:
    """Concrete path → segments, without query string and without the /api/v1 base."""
    path = path.split("?", 1)[0]
    if path.startswith(BASE_PATH + "/"):
        path = path[len(BASE_PATH) :]
    return [unquote(seg) for seg in path.strip("/").split("/") if seg]


def find_operation(method: str, path: str) -> tuple[str, dict[str, Any], dict[str, str]]:
    """(template, operation, path params) for a concrete path like /api/v1/repos/o/r/issues.

    Literal segments win over `{param}` ones, so /repos/issues/search is not mistaken for
    /repos/{owner}/{repo}.
    """
    segments = _split_path(path)
    best: tuple[int, str, dict[str, str]] | None = None
    for template in load_spec()["paths"]:
        params = _match_template(template, segments)
        if params is None:
            continue
        literal = len(segments) - len(params)
        if best is None or literal > best[0]:
            best = (literal, template, params)
    if best is None:
        raise SpecError(f"{path}: no such path in the Gitea spec")
    _, template, params = best
    operation = load_spec()["paths"][template].get(method.lower())
    if operation is None:
        raise SpecError(f"{method.upper()} {template}: method not in the Gitea spec")
    return template, operation, params


def _match_template(template: str, segments: list[str]) -> dict[str, str] | None:
    parts = [p for p in template.strip("/").split("/") if p]
    if len(parts) != len(segments):
        return None
    params: dict[str, str] = {}
    for part, seg in zip(parts, segments, strict=True):
        if part.startswith("{") and part.endswith("}"):
            params[part[1:-1]] = seg
        elif part != seg:
            return None
    return params


def _parameters(operation: Mapping[str, Any], where: str) -> list[dict[str, Any]]:
    return [p for p in operation.get("parameters", []) if p.get("in") == where]


def _response_spec(operation: Mapping[str, Any], status: int) -> dict[str, Any] | None:
    responses: dict[str, Any] = operation.get("responses", {})
    found = responses.get(str(status), responses.get("default"))
    if found is None:
        return None
    if "$ref" in found:
        found = load_spec()["responses"][found["$ref"].rsplit("/", 1)[-1]]
    return dict(found)


def validate_response(
    method: str, path: str, status: int, body: Any, *, strict: bool = False
) -> None:
    """Raise SpecError unless `body` is what the spec allows for this method/path/status.

    - documented status with a schema: body validated against it (nullable fixes applied);
    - documented status without schema (204 etc.): body must be empty (None or "");
    - error status (>= 400), documented or not: a JSON body must be Gitea's error shape
      (404 also needs `errors`); None or text bodies (proxies, empty 403) are accepted;
    - undocumented success status: SpecError (e.g. PATCH issue must be 201, not 200).

    `strict=True` also requires every property the spec lists and rejects extra ones — the
    double's own contract tests use it so responses carry the complete objects.
    """
    template, operation, _ = find_operation(method, path)
    where = f"{method.upper()} {template} → {status}"
    response = _response_spec(operation, status)
    if status >= 400:
        if isinstance(body, Mapping | list):
            schema = copy.deepcopy(_ERROR_SCHEMA)
            if status == 404:
                schema["required"] = ["message", "url", "errors"]
            _check(schema, body, where)
        return
    if response is None:
        raise SpecError(f"{where}: status not documented in the Gitea spec")
    body_schema = response.get("schema")
    if body_schema is None:
        if body not in (None, "", b""):
            raise SpecError(f"{where}: expected an empty body")
        return
    _check(body_schema, body, where, require_all=strict, no_extra=strict)


def validate_request(
    method: str,
    path: str,
    query: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None,
    body: Any = None,
    *,
    strict: bool = True,
    allow_query_auth: bool = True,
) -> None:
    """Raise SpecError unless the request is one the spec declares.

    The path must exist with that method; path parameters declared integer must be integers;
    every query name must be a declared parameter of the operation (plus the global
    `token`/`access_token`/`sudo` unless `allow_query_auth=False`) with a value of the
    declared type/enum/format; a JSON body is validated against the body parameter's schema.
    `strict=True` (default) rejects body fields the schema does not declare, because Gitea
    would silently ignore them (e.g. `labels` in an issue PATCH).
    """
    template, operation, path_params = find_operation(method, path)
    where = f"{method.upper()} {template}"
    for param in _parameters(operation, "path"):
        value = path_params.get(param["name"], "")
        _check_scalar(param, value, f"{where}: path parameter {param['name']}")
    _check_query(operation, query, where, allow_query_auth)
    _check_body(operation, body, where, strict)


def _check_query(
    operation: Mapping[str, Any],
    query: Mapping[str, Any] | Sequence[tuple[str, Any]] | None,
    where: str,
    allow_query_auth: bool,
) -> None:
    declared = {p["name"]: p for p in _parameters(operation, "query")}
    items = list(query.items()) if isinstance(query, Mapping) else list(query or [])
    for name, value in items:
        if name in QUERY_AUTH_PARAMS and allow_query_auth and name not in declared:
            continue
        if name not in declared:
            raise SpecError(f"{where}: query parameter {name!r} is not declared")
        values = value if isinstance(value, list | tuple) else [value]
        for single in values:
            _check_scalar(declared[name], str(single), f"{where}: query parameter {name}")


def _check_scalar(param: Mapping[str, Any], value: str, where: str) -> None:
    """Type/enum/format of one path or query value (as text)."""
    kind = param.get("type")
    if kind == "integer" and not re.fullmatch(r"-?\d+", value):
        raise SpecError(f"{where}: {value!r} is not an integer")
    if kind == "boolean" and value not in _GO_BOOLS:
        raise SpecError(f"{where}: {value!r} is not a boolean")
    if "enum" in param and value not in param["enum"]:
        raise SpecError(f"{where}: {value!r} not in {param['enum']}")
    if param.get("format") == "date-time" and not _RFC3339.match(value):
        raise SpecError(f"{where}: {value!r} is not RFC 3339")


def _check_body(operation: Mapping[str, Any], body: Any, where: str, strict: bool) -> None:
    body_params = _parameters(operation, "body")
    if not body_params:
        if body not in (None, "", b""):
            raise SpecError(f"{where}: this operation takes no request body")
        return
    param = body_params[0]
    if body is None:
        if param.get("required"):
            raise SpecError(f"{where}: request body is required")
        return
    _check(param["schema"], body, f"{where} request body", no_extra=strict)
