"""The extensions, created here once and bound to the app in create_app()."""

from __future__ import annotations

from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from redis import Redis
from sqlalchemy.orm import DeclarativeBase

from app.api.openapi import OpsflowApi


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
            self._client = Redis.from_url(self.url)
        return self._client


redis = RedisConnection()
