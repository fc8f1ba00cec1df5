"""Per-client-IP sliding-window rate limiting, token buckets for write-key senders, and
finding the client IP behind proxies.

A sliding log (the times of the last N accepted requests) is exact: no minute ever holds
more than N accepted requests from one IP, unlike fixed windows or token buckets. IPs are
held in memory only, never stored.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from array import array
from collections.abc import Callable, Iterable


class SlidingWindowLimiter:
    def __init__(
        self,
        limit: int,
        window_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window_seconds
        self._clock = clock
        # Plain float arrays, not deques: a tenth of the memory per IP, and invisible to the
        # garbage collector, which would otherwise walk every tracked IP on each full pass.
        self._hits: dict[str, array[float]] = {}
        self._next_sweep = clock() + window_seconds

    def check(self, key: str) -> float:
        """0.0 if allowed (and counted), else the seconds until the next request is allowed."""
        if self.limit <= 0:
            return 0.0
        now = self._clock()
        if now >= self._next_sweep:
            self._sweep(now)
        hits = self._hits.get(key)
        if hits is None:
            self._hits[key] = array("d", (now,))
            return 0.0
        if len(hits) >= self.limit:
            oldest = hits[0]
            if now - oldest < self.window:
                return max(self.window - (now - oldest), 0.001)
            del hits[0]
        hits.append(now)
        return 0.0

    def _sweep(self, now: float) -> None:
        """Forget IPs that have been quiet for a whole window, so memory tracks active IPs."""
        horizon = now - self.window
        stale = [key for key, hits in self._hits.items() if not hits or hits[-1] <= horizon]
        for key in stale:
            del self._hits[key]
        self._next_sweep = now + self.window / 4

    def __len__(self) -> int:
        return len(self._hits)


class TokenBucketLimiter:
    """Token buckets per key: ``burst`` requests at once, refilled at ``per_minute``.

    For server-side senders, whose limit is thousands a minute: a sliding log would hold
    that many times per key, a bucket holds two numbers. Keys whose bucket is full again
    are forgotten, so memory tracks active senders.
    """

    def __init__(
        self, per_minute: int, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(max(burst, 1))
        self._clock = clock
        self._buckets: dict[str, list[float]] = {}
        """key -> [tokens left, when they were counted]."""
        self._refill = self.burst / self.rate if self.rate > 0 else 0.0
        self._next_sweep = clock() + max(self._refill, 60.0)

    def check(self, key: str) -> float:
        """0.0 if allowed (and counted), else the seconds until the next request is allowed."""
        if self.rate <= 0:
            return 0.0
        now = self._clock()
        if now >= self._next_sweep:
            self._sweep(now)
        bucket = self._buckets.get(key)
        if bucket is None:
            self._buckets[key] = [self.burst - 1.0, now]
            return 0.0
        tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return 0.0
        bucket[0] = tokens
        return max((1.0 - tokens) / self.rate, 0.001)

    def _sweep(self, now: float) -> None:
        """Forget keys whose bucket has filled up again: they start full anyway."""
        full = [key for key, (_, last) in self._buckets.items() if now - last >= self._refill]
        for key in full:
            del self._buckets[key]
        self._next_sweep = now + max(self._refill, 60.0)

    def __len__(self) -> int:
        return len(self._buckets)


def _parse_ip(address: str) -> tuple[int, int] | None:
    """(bits, integer value) of an IP literal, or None; far cheaper than ipaddress."""
    try:
        return 32, int.from_bytes(socket.inet_pton(socket.AF_INET, address), "big")
    except OSError:
        pass
    try:
        return 128, int.from_bytes(socket.inet_pton(socket.AF_INET6, address), "big")
    except OSError:
        return None


class ClientAddress:
    """The client IP: the peer, or, behind a trusted proxy, the right-most untrusted hop."""

    def __init__(self, trusted_proxies: Iterable[str]) -> None:
        networks = [ipaddress.ip_network(item, strict=False) for item in trusted_proxies]
        self._trusted: tuple[tuple[int, int, int], ...] = tuple(
            (n.max_prefixlen, int(n.network_address), int(n.netmask)) for n in networks
        )

        self._peers: dict[str, bool | None] = {}
        """Peers are few (the proxies themselves), so their verdicts are remembered."""

    def _classify(self, address: str) -> bool | None:
        """True: a trusted proxy; False: any other valid IP; None: not an IP at all."""
        parsed = _parse_ip(address)
        if parsed is None:
            return None
        bits, value = parsed
        for b, net, mask in self._trusted:  # noqa: SIM110 - a loop beats any() on this hot path
            if b == bits and value & mask == net:
                return True
        return False

    def _peer_trusted(self, peer: str) -> bool:
        verdict = self._peers.get(peer)
        if verdict is None:
            verdict = bool(self._classify(peer))
            if len(self._peers) < 4096:
                self._peers[peer] = verdict
        return verdict

    def resolve(self, peer: str | None, forwarded_for: str | None) -> str:
        peer = peer or "unknown"
        if not self._trusted or not forwarded_for or not self._peer_trusted(peer):
            return peer
        if "," not in forwarded_for:  # one hop, the usual single proxy: no list to build
            hop = forwarded_for.strip()
            return hop if hop and self._classify(hop) is not None else peer
        hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
        for hop in reversed(hops):
            kind = self._classify(hop)
            if kind is None:
                return peer  # a garbled header from a trusted proxy: fall back to the proxy
            if not kind:
                return hop
        return hops[0] if hops else peer
