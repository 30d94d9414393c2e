"""The extensions, created here once and bound to the app in create_app()."""

from __future__ import annotations

from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from redis import Redis
from sqlalchemy.orm import DeclarativeBase

from app.api.openapi import OpsflowApi
from app.config import REDIS_CONNECT_TIMEOUT_SECONDS


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
api = OpsflowApi()


class RedisConnection:
    """One Redis client per process, made on first use from the app's settings."""

    def __init__(self) -> None:
        self.url: str | None = None
        self._client: Redis | None = None

    def init_app(self, url: str) -> None:
        self.url = url
        self._client = None

    @property
    def client(self) -> Redis:
        if self._client is None:
            if self.url is None:
                raise RuntimeError("Redis is not configured: call create_app() first")
            # A Redis host that is down answers nothing: fail in seconds rather than the system's minutes.
            self._client = Redis.from_url(self.url, socket_connect_timeout=REDIS_CONNECT_TIMEOUT_SECONDS)
        return self._client


redis = RedisConnection()
