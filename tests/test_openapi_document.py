"""The OpenAPI document states what the API does; these hold for every operation, new ones included."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from app.config import INTEGER_MAX


def document(service) -> dict:
    return service.get("/openapi.json", token=None)


def operations(spec: dict) -> Iterator[tuple[str, str, dict]]:
    for path, items in spec["paths"].items():
        for method, operation in items.items():
            if method != "parameters":
                yield path, method, operation


def resolve(spec: dict, schema: dict) -> dict:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def input_integers(spec: dict, schema: dict, where: str, seen: set[str]) -> Iterator[tuple[str, dict]]:
    """Every integer a request body may hold, with where it is."""
    if "$ref" in schema:
        if schema["$ref"] in seen:
            return
        seen = seen | {schema["$ref"]}
    schema = resolve(spec, schema)
    if schema.get("readOnly"):
        return
    if schema.get("type") == "integer":
        yield where, schema
    for name, child in schema.get("properties", {}).items():
        yield from input_integers(spec, child, f"{where}.{name}", seen)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            yield from input_integers(spec, schema[key], f"{where}[]", seen)


def test_every_integer_an_operation_reads_is_bounded(service):
    spec = document(service)
    unbounded = []
    for path, method, operation in operations(spec):
        for parameter in [*spec["paths"][path].get("parameters", []), *operation.get("parameters", [])]:
            schema = parameter.get("schema", {})
            if schema.get("type") == "integer" and not {"minimum", "maximum"} <= set(schema):
                unbounded.append(f"{method} {path} {parameter['in']} {parameter['name']}")
        for content in operation.get("requestBody", {}).get("content", {}).values():
            for where, schema in input_integers(spec, content.get("schema", {}), "body", set()):
                if not {"minimum", "maximum"} <= set(schema) or schema["maximum"] > INTEGER_MAX:
                    unbounded.append(f"{method} {path} {where}")
    assert unbounded == [], "use app.schemas.fields.Integer or Id: " + ", ".join(unbounded)


def test_errors_are_declared_in_the_service_shape(service):
    spec = document(service)
    error = resolve(
        spec, spec["components"]["responses"]["DEFAULT_ERROR"]["content"]["application/json"]["schema"]
    )
    body = resolve(spec, error["properties"]["error"])
    assert set(body["properties"]) == {"code", "message", "field", "details"}
    assert set(body["required"]) == {"code", "message"} and "not_found" in body["properties"]["code"]["enum"]
    for path, method, operation in operations(spec):
        responses = operation["responses"]
        assert responses["default"] == {"$ref": "#/components/responses/DEFAULT_ERROR"}, (path, method)
        # The HTTP server's own answer to an overlong URL, before the API sees the request.
        assert "text/html" in responses["414"]["content"], (path, method)


def test_only_health_and_the_document_are_public(service):
    spec = document(service)
    assert spec["security"] == [{"bearer": []}]
    public = [
        (path, method) for path, method, operation in operations(spec) if operation.get("security") == []
    ]
    assert public == [("/api/v1/health", "get")]
    service.get("/health", token=None)


def test_the_paging_header_is_a_json_document(service, project):
    spec = document(service)
    header = spec["components"]["headers"]["PAGINATION"]
    assert "schema" not in header and "application/json" in header["content"]
    answer = service.api("GET", f"/projects/{project['id']}/hosts", 200)
    assert json.loads(answer.headers["X-Pagination"])["total"] == 0


def test_what_a_post_creates_links_to_the_operations_on_it(service):
    spec = document(service)
    links: dict[str, Any] = spec["paths"]["/api/v1/projects/{pid}/hosts"]["post"]["responses"]["201"]["links"]
    assert set(links) == {"get", "patch", "delete", "get_host-key", "delete_host-key"}
    assert links["get"]["parameters"] == {"pid": "$request.path.pid", "item_id": "$response.body#/id"}
    launch = spec["paths"]["/api/v1/projects/{pid}/script-executions"]["post"]["responses"]["202"]["links"]
    assert (
        launch["post_cancel"]["operationRef"]
        == "#/paths/~1api~1v1~1projects~1{pid}~1jobs~1{jid}~1cancel/post"
    )


def test_nullable_fields_are_declared(service, project):
    spec = document(service)
    schemas = spec["components"]["schemas"]
    for schema, name in [
        ("Job", "started_at"),
        ("Job", "ended_at"),
        ("Slice", "worker"),
        ("Token", "revoked_at"),
    ]:
        assert schemas[schema]["properties"][name].get("nullable") is True, (schema, name)
    assert "format" not in schemas["User"]["properties"]["email"]
    assert service.get("/users/me")["email"] == ""
