"""Page numbers over lists that can grow to millions of rows."""

from __future__ import annotations

from functools import cached_property
from typing import Any, cast

from django.core.paginator import Paginator
from django.db.models import QuerySet


class CappedPaginator(Paginator):
    """A paginator that counts at most `cap` rows, in one `SELECT COUNT(*)` over a `LIMIT cap + 1` subquery of
    the primary keys, so a page costs the same whatever the number of matches; `capped` says that there are
    more than `cap`, and pages past the cap are not offered (filter to narrow the list)."""

    cap = 2_000

    @cached_property
    def _counted(self) -> int:
        rows = cast(QuerySet[Any], self.object_list)  # built from querysets only
        if not rows.query.is_sliced:
            rows = rows.order_by()  # which rows, not their order, is what a count needs
        return rows.values("pk")[: self.cap + 1].count()

    @cached_property
    def count(self) -> int:
        return min(self._counted, self.cap)

    @cached_property
    def capped(self) -> bool:
        return self._counted > self.cap
