"""What a normalizer instance has recently read, so that repeated content is not rebuilt."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Set


class RecentScans:
    """Scan keys already read per waybill, for the most recently pushed waybills.

    Carrier pushes repeat a waybill's whole history in every push; skipping scans
    read before saves building their events. It is only a saving: the job still
    de-duplicates scans in keyed state, so forgetting (eviction, a restart) costs
    work, never correctness. One instance per operator, never shared between them.
    """

    def __init__(self, capacity: int = 50_000) -> None:
        self._capacity = capacity
        self._seen: OrderedDict[str, set[str]] = OrderedDict()

    def seen(self, waybill: str) -> Set[str]:
        """Scan keys of this waybill read before (empty if none, or forgotten)."""
        return self._seen.get(waybill, frozenset())

    def remember(self, waybill: str, scan_keys: Iterable[str]) -> None:
        """Called once a push has been read whole: a push rejected half-way must not hide its scans
        from the next push that repeats them."""
        seen = self._seen.get(waybill)
        if seen is None:
            seen = self._seen[waybill] = set()
            if len(self._seen) > self._capacity:
                self._seen.popitem(last=False)
        else:
            self._seen.move_to_end(waybill)
        seen.update(scan_keys)
