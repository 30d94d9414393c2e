"""Query-string arguments of list endpoints."""

from __future__ import annotations

from marshmallow import RAISE, Schema, pre_load

PAGING_ARGUMENTS = ("page", "page_size")


class FilterArgs(Schema):
    """Filters of a list: a name the endpoint does not know is refused, not ignored."""

    class Meta:
        unknown = RAISE

    @pre_load
    def without_paging(self, data, **kwargs) -> dict:
        return {name: data[name] for name in data if name not in PAGING_ARGUMENTS}
