"""Bearer-token authentication of every API call but health and the API's own description."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask, g, request

from app.api.errors import error_response
from app.services import identity
from app.services.access import Actor
from app.services.errors import Unauthorized

PUBLIC_ENDPOINTS = frozenset(
    {"health.Health", "api-docs.openapi_json", "api-docs.openapi_swagger_ui", "docs-assets.swagger_ui_asset"}
)
# A user's first token is made with their password (HTTP Basic), and a password is changed with it;
# on these endpoints only.
PASSWORD_ENDPOINTS = frozenset({("users.Tokens", "POST"), ("users.Password", "POST")})
# Endpoints that authenticate a call carrying their own credential (a timed job's trigger secret)
# themselves, with the function that reads it from the request.
SECRET_ENDPOINTS: dict[str, Callable[[], str | None]] = {}


def current_actor() -> Actor:
    return g.actor


def register(app: Flask) -> None:
    @app.before_request
    def authenticate():
        if not request.path.startswith("/api/v1") or request.endpoint in PUBLIC_ENDPOINTS:
            return None
        if request.endpoint in SECRET_ENDPOINTS and SECRET_ENDPOINTS[request.endpoint]() is not None:
            return None
        credentials = request.authorization
        try:
            if credentials and credentials.type == "bearer" and credentials.token:
                g.actor = identity.authenticate(credentials.token, request.remote_addr)
            elif (
                credentials
                and credentials.type == "basic"
                and (request.endpoint, request.method) in PASSWORD_ENDPOINTS
            ):
                g.actor = identity.login(
                    credentials.username or "", credentials.password or "", request.remote_addr
                )
            else:
                raise Unauthorized("send an API token: Authorization: Bearer <token>")
        except Unauthorized as exc:
            return error_response(401, exc.message, headers={"WWW-Authenticate": "Bearer"})
        return None
