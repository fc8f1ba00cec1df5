"""Recent refusals of a site's calls for their origin, for the install check.

A page on an origin its site does not allow gets 403 and nothing arrives: the install check
would keep saying "Waiting for the first event" with no hint why. So each process keeps, per
site, the origins it refused lately (origin, count, first and last time: no personal data),
and logs one warning per site and origin every ``warn_seconds``, never one per request.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

log = logging.getLogger("footfall.api")

NO_ORIGIN = "(no Origin header)"


@dataclass(slots=True)
class Refusal:
    origin: str
    count: int
    first_at: datetime
    last_at: datetime


class OriginRefusals:
    """Bounded: ``per_site`` origins a site (the oldest forgotten first), ``max_sites``."""

    def __init__(self, per_site: int = 10, max_sites: int = 1000, warn_seconds: float = 600.0):
        self._per_site = per_site
        self._max_sites = max_sites
        self._warn_seconds = warn_seconds
        self._sites: dict[str, dict[str, Refusal]] = {}
        self._warned: dict[tuple[str, str], float] = {}

    def record(self, site_id: str, origin: str | None) -> None:
        shown = origin or NO_ORIGIN
        now = datetime.now(UTC).replace(tzinfo=None)
        refused = self._sites.get(site_id)
        if refused is None:
            if len(self._sites) >= self._max_sites:
                del self._sites[next(iter(self._sites))]
            refused = self._sites[site_id] = {}
        entry = refused.get(shown)
        if entry is None:
            if len(refused) >= self._per_site:
                oldest = min(refused.values(), key=lambda r: r.last_at)
                del refused[oldest.origin]
            entry = refused[shown] = Refusal(shown, 0, now, now)
        entry.count += 1
        entry.last_at = now
        key = (site_id, shown)
        moment = time.monotonic()
        if moment - self._warned.get(key, -self._warn_seconds) >= self._warn_seconds:
            if len(self._warned) > 10 * self._max_sites:
                self._warned.clear()
            self._warned[key] = moment
            log.warning(
                "calls refused: origin not allowed for site",
                extra={"site": site_id, "origin": shown[:200], "refused_so_far": entry.count},
            )

    def recent(self, site_id: str) -> list[Refusal]:
        """The site's refused origins, the latest first."""
        refused = self._sites.get(site_id, {})
        return sorted(refused.values(), key=lambda r: r.last_at, reverse=True)

    def forget(self, site_id: str, origin: str) -> None:
        """After the origin was allowed: it is no longer a refusal to explain."""
        self._sites.get(site_id, {}).pop(origin, None)
