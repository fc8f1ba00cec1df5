"""The event-loop watchdog on a real asyncio loop with a real blocking call."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from footfall.http.watchdog import LOOP_STALLS, LoopWatchdog


def block_the_loop_for(seconds: float) -> None:
    time.sleep(seconds)  # what a blocking call in a request handler does to every request


def test_a_blocked_loop_is_reported_with_the_blocking_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> LoopWatchdog:
        watchdog = LoopWatchdog(threshold_s=0.3, interval_s=0.05)
        watchdog.start()
        await asyncio.sleep(0.2)  # turning normally: nothing to say
        block_the_loop_for(1.5)
        await asyncio.sleep(0.2)  # the heartbeat runs again and reports the stall's length
        await watchdog.stop()
        return watchdog

    stalls_before = LOOP_STALLS._value.get()
    with caplog.at_level(logging.WARNING, logger="footfall.watchdog"):
        watchdog = asyncio.run(main())
    blocked = [vars(r) for r in caplog.records if r.getMessage() == "event loop blocked"]
    resumed = [vars(r) for r in caplog.records if r.getMessage() == "event loop turning again"]
    assert len(blocked) == 1  # one stall, reported once while it lasts
    assert len(resumed) == 1
    assert "block_the_loop_for" in blocked[0]["stack"]  # the stack names the blocking line
    assert "time.sleep" in blocked[0]["stack"]
    assert blocked[0]["seconds"] >= 0.3
    assert resumed[0]["stalled_seconds"] >= 1.5  # the whole stall, measured when it ended
    assert watchdog.longest == pytest.approx(resumed[0]["stalled_seconds"], abs=0.01)
    assert LOOP_STALLS._value.get() == stalls_before + 1


def test_a_loop_that_keeps_turning_is_not_reported(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        watchdog = LoopWatchdog(threshold_s=1.0, interval_s=0.05)
        watchdog.start()
        for _ in range(20):
            block_the_loop_for(0.02)  # short blocking steps, the loop turns between them
            await asyncio.sleep(0)
        await asyncio.sleep(0.1)
        await watchdog.stop()

    with caplog.at_level(logging.WARNING, logger="footfall.watchdog"):
        asyncio.run(main())
    assert [r.getMessage() for r in caplog.records] == []
