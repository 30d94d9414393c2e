"""The Api object: OpenAPI naming of schemas, the service's error shape on HTTP errors and in the document,
bounded integers in paths and paging, the public endpoints declared so, and the API page's Swagger UI files,
served by the service itself so that the page works without internet.

All of it applies to every blueprint registered, so a new route is described and bounded like the others.
"""

from __future__ import annotations

import re
from typing import Any

import swagger_ui_bundle
from apispec.ext.marshmallow import MarshmallowPlugin
from apispec.ext.marshmallow.openapi import OpenAPIConverter
from flask import Flask, send_from_directory
from flask_smorest import Api, Blueprint
from flask_smorest.pagination import PaginationMetadataSchema
from marshmallow import fields, validate
from werkzeug.exceptions import HTTPException
from werkzeug.routing import IntegerConverter, ValidationError

from app.api.errors import ErrorSchema, error_response
from app.config import INTEGER_MAX
from app.services.errors import first_error

PAGE = fields.Integer(load_default=1, validate=validate.Range(1, INTEGER_MAX))
PATH_PARAMETER = re.compile(r"{(\w+)}")
# gunicorn answers a request line longer than it takes (4094 bytes) itself, before the API sees it.
URI_TOO_LONG = {
    "description": "the URL is longer than the HTTP server takes; answered by the server, in HTML",
    "content": {"text/html": {"schema": {"type": "string"}}},
}


def schema_name(schema) -> str:
    """Component name of a schema; variants (partial, only, exclude) get names of their own."""
    cls = schema if isinstance(schema, type) else type(schema)
    name = cls.__name__.removesuffix("Schema")
    if not isinstance(schema, type):
        if schema.partial:
            name += "Patch"
        if schema.only or schema.exclude:
            name += "Summary"
    return name


class IdConverter(IntegerConverter):
    """`<int:...>` in every route: an id an Integer column holds; any other number matches no route (404)."""

    def __init__(self, url_map, *args, **kwargs) -> None:
        super().__init__(url_map, min=1, max=INTEGER_MAX)

    def to_python(self, value: str) -> int:
        if len(value) > len(str(INTEGER_MAX)):
            raise ValidationError()
        return super().to_python(value)


class SchemaConverter(OpenAPIConverter):
    """Adds what a schema states in `Meta.openapi` (rules across fields: oneOf, anyOf...) to its description.

    A partial variant (a PATCH body) leaves them out: it may give any of the fields, or none.
    """

    def schema2jsonschema(self, schema) -> dict[str, Any]:
        jsonschema = super().schema2jsonschema(schema)
        extra = getattr(getattr(schema, "Meta", None), "openapi", None)
        if extra and not getattr(schema, "partial", None):
            jsonschema.update(extra)
        return jsonschema


class SchemaPlugin(MarshmallowPlugin):
    Converter = SchemaConverter


class OpsflowApi(Api):
    """flask-smorest's Api with the service's error shape."""

    ERROR_SCHEMA = ErrorSchema

    def __init__(self) -> None:
        super().__init__(spec_kwargs={"marshmallow_plugin": SchemaPlugin(schema_name_resolver=schema_name)})

    def init_app(self, app: Flask, *args, **kwargs) -> None:
        app.url_map.converters["int"] = IdConverter
        super().init_app(app, *args, **kwargs)
        self.spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
        self.spec.options["security"] = [{"bearer": []}]

    def register_blueprint(self, blp: Blueprint, **options) -> None:
        # Imported here: the authentication's module needs the models, which need this module's Api.
        from app.api.auth import PUBLIC_ENDPOINTS

        for endpoint, docs in blp._docs.items():
            for method, doc in docs.items():
                if method == "parameters":
                    continue
                if "pagination" in doc:
                    # The schema flask-smorest made for this endpoint both parses and documents its paging.
                    doc["pagination"]["parameters"]["schema"]._declared_fields["page"] = PAGE
                manual = doc.setdefault("manual_doc", {})
                manual.setdefault("responses", {})["414"] = URI_TOO_LONG
                if f"{options.get('name', blp.name)}.{endpoint}" in PUBLIC_ENDPOINTS:
                    manual["security"] = []
        super().register_blueprint(blp, **options)
        link_created_resources(self.spec._paths)

    def _register_pagination_header(self) -> None:
        self.spec.components.schema("PaginationMetadata", schema=PaginationMetadataSchema)
        self.spec.components.header(
            "PAGINATION",
            {
                "description": "the totals of the list, as a JSON document",
                "content": {"application/json": {"schema": "PaginationMetadata"}},
            },
            lazy=True,
        )

    def handle_http_exception(self, error: HTTPException):
        data = getattr(error, "data", None) or {}
        messages = data.get("messages") or data.get("errors")
        headers = data.get("headers")
        if messages:
            # webargs keys errors by location first (json, query...); the field path is what users need.
            nested = next(iter(messages.values())) if len(messages) == 1 else messages
            field, text = first_error(nested)
            if error.code == 400 and field is None:
                return error_response(400, f"malformed request body: {text}", headers=headers)
            message = f"{field}: {text}" if field else text
            return error_response(error.code or 400, message, field, nested, headers)
        return error_response(error.code or 500, data.get("message") or error.description, headers=headers)


def link_created_resources(paths: dict[str, dict]) -> None:
    """Give every POST that answers one resource OpenAPI links to the operations on that resource (read,
    change, delete, its sub-resources), its id taken from the answer and the other path parameters from
    the request. Clients, and the stateful phase of a fuzzer, follow them."""
    item_paths: dict[str, list[str]] = {}
    for path, operations in paths.items():
        schema = answered_schema(operations.get("get", {}), "200")
        if schema and path.endswith("}"):
            item_paths.setdefault(schema, []).append(path)
    for source, operations in paths.items():
        post = operations.get("post")
        for status in ("201", "202"):
            schema = answered_schema(post or {}, status)
            if schema is None:
                continue
            known = set(PATH_PARAMETER.findall(source))
            items = [
                item for item in item_paths.get(schema, []) if set(PATH_PARAMETER.findall(item)[:-1]) <= known
            ]
            # A collection's own item path when it has one (/scripts/{sid}, not the public /scripts/{sid}).
            nested = [item for item in items if item.rsplit("/", 1)[0] == source]
            links = {}
            for item in nested or items:
                links.update(links_to(item, paths, known, skip=(source, "post")))
            if links:
                post["responses"][status]["links"] = links


def links_to(item: str, paths: dict[str, dict], known: set[str], skip: tuple[str, str]) -> dict[str, dict]:
    """Links to every operation at `item` or below whose path parameters are the item's id or `known`."""
    item_id = PATH_PARAMETER.findall(item)[-1]
    links = {}
    for target, operations in paths.items():
        names = PATH_PARAMETER.findall(target)
        if not (target == item or target.startswith(item + "/")) or not set(names) <= known | {item_id}:
            continue
        suffix = "".join(
            f"_{part}" for part in target.removeprefix(item).split("/") if part and "{" not in part
        )
        pointer = target.replace("~", "~0").replace("/", "~1")
        for method in operations:
            if method != "parameters" and (target, method) != skip:
                parameters = {name: f"$request.path.{name}" for name in names if name != item_id}
                links[method + suffix] = {
                    "operationRef": f"#/paths/{pointer}/{method}",
                    "parameters": {**parameters, item_id: "$response.body#/id"},
                }
    return links


def answered_schema(operation: dict, status: str) -> str | None:
    """The component an operation answers with on `status`, when it answers one object of one."""
    response = operation.get("responses", {}).get(status)
    if not isinstance(response, dict):
        return None
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    return schema.get("$ref")


SWAGGER_UI_ASSETS_URL = "/api/v1/docs/assets/"
swagger_ui_assets = Blueprint("docs-assets", __name__, url_prefix=SWAGGER_UI_ASSETS_URL.rstrip("/"))


@swagger_ui_assets.route("/<path:name>")
def swagger_ui_asset(name: str):
    return send_from_directory(swagger_ui_bundle.swagger_ui_path, name, max_age=86400)
