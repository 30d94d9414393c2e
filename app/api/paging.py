"""Paging of SQLAlchemy selects for flask-smorest's `paginate` (totals in X-Pagination)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask_smorest import Blueprint, Page
from flask_smorest.pagination import PaginationParameters
from marshmallow import RAISE, Schema
from sqlalchemy import Select, func, select

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


def shown_page(
    query: Select, show: Callable[[Any], Any], pagination_parameters: PaginationParameters
) -> list:
    """A page of a `select()` of rows, each turned by `show` into what the response schema dumps;
    for views paginated by `blp.paginate()` without a page class."""
    pagination_parameters.item_count = db.session.scalar(
        select(func.count()).select_from(query.order_by(None).subquery())
    )
    first, size = pagination_parameters.first_item, pagination_parameters.page_size
    return [show(row) for row in db.session.scalars(query.offset(first).limit(size))]
