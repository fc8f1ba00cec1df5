"""A short soak (about 20 s; bench/soak.py runs minutes): a steady scheduled load from 60
client IPs, three of them over the 120/min limit. Asserted are only things that are not
timings: no 5xx, the limiter exact (120 accepted per over-limit IP, no 429 for the others),
every acknowledged event stored, and memory within a generous bound."""

from __future__ import annotations

from pathlib import Path

from conftest import CLEAN_EXIT, Server
from traffic import RATE_LIMITED_KINDS, LoadPlan, percentile, run_load, slope_per_minute

PLAN = LoadPlan(duration=20, light_ips=57, light_rate=1.2, heavy_ips=3, heavy_rate=10)


def test_steady_load_holds_the_limit_stores_everything_and_keeps_memory(tmp_path: Path) -> None:
    server = Server(tmp_path / "srv")
    key = server.start_with_key()
    assert server.process is not None
    try:
        result = run_load(server.url, key, PLAN, server.process.pid)
    finally:
        assert server.stop() in CLEAN_EXIT
    stored = server.rows("SELECT count(*) FROM events")[0][0]
    latencies = result.latencies()
    rss = [kib for _, kib in result.rss]
    print(
        f"\nsoak: {len(result.answers)} requests in {result.wall:.1f} s, "
        f"p50 {percentile(latencies, 0.5) * 1000:.1f} ms, "
        f"p99 {percentile(latencies, 0.99) * 1000:.1f} ms, statuses {dict(result.statuses)}, "
        f"RSS first/last/max {rss[0] // 1024}/{rss[-1] // 1024}/{max(rss) // 1024} MiB, "
        f"slope {slope_per_minute(result.rss):+.1f} MiB/min, {result.late} sent late"
    )

    assert len(result.answers) == len(PLAN.schedule())
    assert not [s for s in result.statuses if s >= 500], result.statuses
    assert stored == result.acknowledged
    for ip, answers in result.per_ip().items():
        limited = [a for a in answers if a.kind in RATE_LIMITED_KINDS]
        accepted = [a for a in limited if a.status != 429]
        if PLAN.is_heavy(ip):
            # All of this IP's calls fall in one minute (the run is 20 s), so the sliding
            # window lets exactly the first 120 through, whatever the timing.
            assert max(a.sent_at for a in limited) - min(a.sent_at for a in limited) < 60
            assert len(limited) > 120
            assert len(accepted) == 120, (ip, len(accepted))
            assert all(a.status in (200, 429) for a in limited)
        else:
            assert all(a.status != 429 for a in answers), ip
    # Generous: a leak of a few KiB per request would show; allocator noise would not.
    assert rss[-1] - rss[0] < 150 * 1024, rss
