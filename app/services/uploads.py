"""Imports that take a document as text: `{format, content}` in a JSON body, or a multipart upload in `file`
with the same fields beside it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.services.errors import Invalid


def with_upload(
    data: dict[str, Any], filename: str, raw: bytes, format_of_suffix: dict[str, str]
) -> dict[str, Any]:
    """The import's fields with the uploaded file's text as content, and its format from the file's name
    (`format_of_suffix`) when the fields do not say it."""
    if "content" in data:
        raise Invalid("send the document as content or as a file, not both", "content")
    try:
        content = raw.decode()
    except UnicodeDecodeError as exc:
        raise Invalid("the file is not UTF-8 text", "file") from exc
    fmt = data.get("format") or format_of_suffix.get(Path(filename).suffix.lower())
    return {**data, "content": content, **({"format": fmt} if fmt else {})}
