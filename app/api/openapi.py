"""The Api object: OpenAPI naming of schemas, the service's error shape on HTTP errors, and the API
page's Swagger UI files, served by the service itself so that the page works without internet."""

from __future__ import annotations

import swagger_ui_bundle
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, send_from_directory
from flask_smorest import Api
from werkzeug.exceptions import HTTPException

from app.api.errors import error_response
from app.services.errors import first_error


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


class OpsflowApi(Api):
    """flask-smorest's Api with the service's error shape."""

    def __init__(self) -> None:
        super().__init__(
            spec_kwargs={"marshmallow_plugin": MarshmallowPlugin(schema_name_resolver=schema_name)}
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


SWAGGER_UI_ASSETS_URL = "/api/v1/docs/assets/"
swagger_ui_assets = Blueprint("docs-assets", __name__, url_prefix=SWAGGER_UI_ASSETS_URL.rstrip("/"))


@swagger_ui_assets.route("/<path:name>")
def swagger_ui_asset(name: str):
    return send_from_directory(swagger_ui_bundle.swagger_ui_path, name, max_age=86400)
