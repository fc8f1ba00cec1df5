"""Pieces with no server around them: the rate window, proxy hops, origins, redaction, config."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import pytest

from footfall.config import load_settings
from footfall.http.ratelimit import ClientAddress, SlidingWindowLimiter, TokenBucketLimiter
from footfall.ingest.journal import message_id_filter
from footfall.logs import redact
from footfall.sites import normalise_origin, validate_origin_pattern


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_sliding_window_is_exact_at_the_limit() -> None:
    clock = Clock()
    limiter = SlidingWindowLimiter(120, 60.0, clock)
    for _ in range(120):
        assert limiter.check("a") == 0.0
        clock.now += 0.25  # 120 requests spread over 30 s
    assert limiter.check("a") > 0  # the 121st within the minute
    assert limiter.check("b") == 0.0
    clock.now = 1000.0 + 60.0  # the first request leaves the window
    assert limiter.check("a") == 0.0
    assert limiter.check("a") > 0  # the second one has not yet left it
    clock.now += 0.25
    assert limiter.check("a") == 0.0


def test_token_bucket_takes_a_burst_then_paces_and_forgets_idle_senders() -> None:
    clock = Clock()
    limiter = TokenBucketLimiter(600, 50, clock)  # 10 a second, 50 at once
    assert all(limiter.check("a") == 0.0 for _ in range(50))
    wait = limiter.check("a")
    assert wait == pytest.approx(0.1)  # one token comes back in a tenth of a second
    assert limiter.check("b") == 0.0  # every key has a bucket of its own
    clock.now += 1.0
    assert [limiter.check("a") for _ in range(11)][-2:] == [0.0, pytest.approx(0.1)]
    clock.now += 120.0  # both buckets full again: forgotten at the next sweep
    assert limiter.check("c") == 0.0
    assert len(limiter) == 1
    assert all(TokenBucketLimiter(0, 1, clock).check("a") == 0.0 for _ in range(100))


def test_refused_requests_do_not_extend_the_window() -> None:
    clock = Clock()
    limiter = SlidingWindowLimiter(2, 60.0, clock)
    assert limiter.check("a") == limiter.check("a") == 0.0
    for _ in range(10):
        clock.now += 5
        assert limiter.check("a") > 0
    clock.now = 1000.0 + 60.0
    assert limiter.check("a") == 0.0


def test_quiet_ips_are_forgotten() -> None:
    clock = Clock()
    limiter = SlidingWindowLimiter(5, 60.0, clock)
    for i in range(1000):
        limiter.check(f"10.0.{i // 250}.{i % 250}")
    assert len(limiter) == 1000
    clock.now += 61
    limiter.check("fresh")
    assert len(limiter) == 1


def test_zero_limit_disables() -> None:
    limiter = SlidingWindowLimiter(0)
    assert all(limiter.check("a") == 0.0 for _ in range(1000))


@pytest.mark.parametrize(
    ("peer", "header", "expected"),
    [
        ("127.0.0.1", "203.0.113.5", "203.0.113.5"),
        ("127.0.0.1", "198.51.100.1, 203.0.113.5", "203.0.113.5"),
        ("127.0.0.1", "203.0.113.5, 10.0.0.2", "203.0.113.5"),  # inner proxy skipped
        ("127.0.0.1", "10.0.0.3, 10.0.0.2", "10.0.0.3"),
        ("127.0.0.1", "10.0.0.3", "10.0.0.3"),  # only proxies: the left-most hop
        ("127.0.0.1", " ", "127.0.0.1"),
        ("127.0.0.1", "not-an-ip", "127.0.0.1"),
        ("127.0.0.1", None, "127.0.0.1"),
        ("198.51.100.7", "203.0.113.5", "198.51.100.7"),  # untrusted peer: header ignored
        ("::1", "2001:db8::5", "2001:db8::5"),
    ],
)
def test_client_address(peer: str, header: str | None, expected: str) -> None:
    resolver = ClientAddress(["127.0.0.1", "10.0.0.0/8", "::1"])
    assert resolver.resolve(peer, header) == expected


def test_origin_normalisation() -> None:
    assert normalise_origin("HTTPS://Shop.Test:443/") == "https://shop.test"
    assert normalise_origin("http://shop.test:8080") == "http://shop.test:8080"
    assert normalise_origin("ftp://shop.test") is None
    assert normalise_origin("https://") is None
    assert validate_origin_pattern("https://*.Shop.test") == "https://*.shop.test"
    with pytest.raises(ValueError, match="not an origin"):
        validate_origin_pattern("shop.test")
    # The opaque origin of sandboxed frames and file: pages is listed by its name only.
    assert validate_origin_pattern(" NULL ") == "null"
    with pytest.raises(ValueError, match="not an origin"):
        validate_origin_pattern("null://shop.test")


def test_redaction() -> None:
    text = "mail Jane.Doe+x@Example.co.uk key ff_0123456789ab_SeCrEt-_x ok"
    assert redact(text) == "mail [email] key ff_[redacted] ok"


def test_config_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "footfall.toml"
    config.write_text(
        'port = 9001\nrate_limit_per_minute = 30\ntrusted_proxies = ["10.0.0.0/8"]\n'
        '[[sites]]\nid = "shop"\nallowed_origins = ["https://shop.test"]\n'
    )
    for key in list(os.environ):
        if key.startswith("FOOTFALL_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("FOOTFALL_RATE_LIMIT_PER_MINUTE", "60")
    monkeypatch.setenv("FOOTFALL_ALLOWED_ORIGINS", "https://a.test, https://b.test")
    settings = load_settings(str(config), port=None)
    assert settings.port == 9001  # file
    assert settings.rate_limit_per_minute == 60  # environment beats file
    assert settings.allowed_origins == ["https://a.test", "https://b.test"]
    assert settings.sites[0].id == "shop"
    assert load_settings(str(config), port=7000).port == 7000  # explicit flag beats all
    assert settings.duckdb_memory_limit is None  # DuckDB's own default
    assert settings.malloc_arena_max == 2
    for accepted in ("1GB", "512 MiB", "1.5gb", "25%"):
        assert load_settings(str(config), duckdb_memory_limit=accepted).duckdb_memory_limit
    with pytest.raises(ValueError, match="duckdb_memory_limit"):
        load_settings(str(config), duckdb_memory_limit="plenty")
    monkeypatch.setenv("FOOTFALL_TRUSTED_PROXIES", "not-a-network")
    with pytest.raises(ValueError, match="not-a-network"):
        load_settings(str(config))


_ARENA_PROBE = """
import ctypes, sys, tempfile, threading
from footfall.cli.allocator import limit_malloc_arenas

capped = limit_malloc_arenas(int(sys.argv[1]))
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.fopen.restype = ctypes.c_void_p
libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]
together = threading.Barrier(12)

def allocate():
    together.wait()  # all alive at once: each asks for an arena of its own
    libc.malloc(4096)
    together.wait()

threads = [threading.Thread(target=allocate) for _ in range(12)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
with tempfile.NamedTemporaryFile(suffix=".xml") as out:
    stream = libc.fopen(out.name.encode(), b"w")
    libc.malloc_info(0, stream)
    libc.fclose(stream)
    print(capped, open(out.name).read().count("<heap nr="))
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_malloc_arenas_are_capped_from_the_process() -> None:
    """``malloc_arena_max`` takes effect without the environment variable: twelve threads
    allocating at once share two arenas instead of getting up to 8 per core; 0 and an
    explicit MALLOC_ARENA_MAX leave glibc alone."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}

    def probe(arenas: int, **extra: str) -> tuple[str, int]:
        out = subprocess.run(
            [sys.executable, "-c", _ARENA_PROBE, str(arenas)],
            env={**env, **extra},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        return out[0], int(out[1])

    assert probe(2) == ("True", 2)
    capped, heaps = probe(0)
    assert capped == "False"
    assert heaps > 2
    assert probe(2, MALLOC_ARENA_MAX="3")[0] == "False"


def test_the_message_id_filter_has_no_false_negatives_and_a_fixed_size() -> None:
    """The journal writer trusts an id the filter lacks to be new, so every id added must
    be in it; and its memory must not grow with the ids kept (a set of them did)."""
    keys = [(f"site-{i % 3}", f"message-{i}") for i in range(200_000)]
    seen = message_id_filter(iter(keys[:100_000]))
    size = seen.size_in_bits
    seen.update(keys[100_000:])
    assert all(key in seen for key in keys)
    assert seen.size_in_bits == size
    strangers = sum((f"site-{i % 3}", f"other-{i}") in seen for i in range(100_000))
    assert strangers < 100  # 200k of the 10M it is sized for: far under its 1 % rate
