"""Bearer-token authentication of every API call but health and the API's own description."""

from __future__ import annotations

from flask import Flask, g, request

from app.api.errors import error_response
from app.services import identity
from app.services.access import Actor
from app.services.errors import Unauthorized

PUBLIC_ENDPOINTS = frozenset({"health.Health", "api-docs.openapi_json", "api-docs.openapi_swagger_ui"})
# A user's first token is made with their password (HTTP Basic), on this endpoint only.
PASSWORD_ENDPOINT = ("users.Tokens", "POST")


def current_actor() -> Actor:
    return g.actor


def register(app: Flask) -> None:
    @app.before_request
    def authenticate():
        if not request.path.startswith("/api/v1") or request.endpoint in PUBLIC_ENDPOINTS:
            return None
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        credentials = request.authorization
        if (
            (request.endpoint, request.method) == PASSWORD_ENDPOINT
            and credentials
            and credentials.type == "basic"
        ):
            try:
                g.actor = identity.login(
                    credentials.username or "", credentials.password or "", request.remote_addr
                )
            except Unauthorized as exc:
                return error_response(401, exc.message, headers={"WWW-Authenticate": "Basic"})
            return None
        if scheme.lower() != "bearer" or not value.strip():
            return error_response(
                401,
                "send an API token: Authorization: Bearer <token>",
                headers={"WWW-Authenticate": "Bearer"},
            )
        try:
            g.actor = identity.authenticate(value.strip(), request.remote_addr)
        except Unauthorized as exc:
            return error_response(401, exc.message, headers={"WWW-Authenticate": "Bearer"})
        return None
