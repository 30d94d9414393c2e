"""What the export and import endpoints of job templates and flows share: the exported document as a
download, and the forms an import takes (those of the inventory import): the document as the JSON body,
its text as the body, {format, content} in a JSON body, or a multipart upload in `file`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from flask import Response, request
from marshmallow import Schema

from app.api.jobs import attachment
from app.services.errors import Invalid
from app.services.exchange import load, parse, to_text
from app.services.uploads import with_upload

MEDIA_TYPES = {"json": "application/json", "yaml": "application/yaml"}
FORMAT_OF_SUFFIX = {".json": "json", ".yaml": "yaml", ".yml": "yaml"}


def import_body(formats: Sequence[str], description: str) -> dict[str, Any]:
    """The OpenAPI request body of an import."""
    return {
        "content": {
            "application/json": {"schema": {"type": "object", "description": description}},
            "application/yaml": {"schema": {"type": "string"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "format": {"type": "string", "enum": list(formats)},
                    },
                    "required": ["file"],
                }
            },
        }
    }


def exported(document: dict[str, Any], form: str, name: str) -> Response:
    """The document as a download in JSON or YAML."""
    return Response(to_text(document, form), mimetype=MEDIA_TYPES[form], headers=attachment(f"{name}.{form}"))


def sent_document(
    schema: type[Schema],
    format_of_suffix: dict[str, str] = FORMAT_OF_SUFFIX,
    read: Callable[[str], Any] = parse,
) -> tuple[Any, str | None]:
    """The document of an import request, in whichever form it came, and the format it was said to be in.
    `read` turns a text into the document (YAML or JSON by default)."""
    file = request.files.get("file")
    if file is not None:
        data = with_upload(request.form.to_dict(), file.filename or "", file.read(), format_of_suffix)
        text = load(schema(), data)
        return read(text["content"]), text.get("format")
    if not request.is_json:
        return read(request.get_data(as_text=True)), None
    body = request.get_json(silent=True)
    if body is None:
        raise Invalid("the body is not valid JSON", "document")
    if isinstance(body, dict) and "content" in body:
        text = load(schema(), body)
        return read(text["content"]), text.get("format")
    return body, None
