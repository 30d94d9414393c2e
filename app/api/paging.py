"""Paging of SQLAlchemy selects for flask-smorest's `paginate` (totals in X-Pagination)."""

from __future__ import annotations

from flask_smorest import Blueprint, Page
from marshmallow import RAISE, Schema
from sqlalchemy import func, select

from app.extensions import db


class SelectPage(Page):
    """A page of a `select()`: a COUNT for the total, OFFSET/LIMIT for the rows."""

    @property
    def item_count(self) -> int:
        return db.session.scalar(select(func.count()).select_from(self.collection.order_by(None).subquery()))

    @property
    def items(self) -> list:
        params = self.page_params
        return db.session.scalars(self.collection.offset(params.first_item).limit(params.page_size)).all()


class RowPage(SelectPage):
    """A page of a `select()` of several columns: each item is a row, read by column name."""

    @property
    def items(self) -> list:
        params = self.page_params
        query = self.collection.offset(params.first_item).limit(params.page_size)
        return db.session.execute(query).mappings().all()


def filter_arguments(blp: Blueprint, schema: type[Schema] | Schema):
    """Parse a list's filters from the query string, refusing names the schema does not know."""
    return blp.arguments(schema, location="query", unknown=RAISE)
