"""Event-loop watchdog: one blocking call stalls every request, so say when and where.

The event loop stamps a heartbeat a few times a second; a thread beside it checks the stamp.
When the loop has not turned for ``threshold_s`` the thread logs the loop thread's stack at
that moment (file, line and code only: no variable values, so no secrets or emails), and
when the loop turns again it logs how long the stall lasted. ``/metrics`` counts stalls and
keeps the longest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
import time
import traceback

from prometheus_client import Counter, Gauge

log = logging.getLogger("footfall.watchdog")

LOOP_STALLS = Counter(
    "footfall_event_loop_stalls_total", "Times the event loop did not turn for the threshold"
)
LOOP_STALL_MAX = Gauge(
    "footfall_event_loop_stall_max_seconds", "Longest time the event loop did not turn"
)


class LoopWatchdog:
    """Start inside the running loop; ``stop()`` at shutdown."""

    def __init__(self, threshold_s: float = 1.0, interval_s: float = 0.1) -> None:
        self.threshold_s = threshold_s
        self.interval_s = interval_s
        self._beat = time.monotonic()
        self._loop_thread = threading.get_ident()
        self._reported = False  # the thread has reported the stall under way
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._task: asyncio.Task[None] | None = None
        self.longest = 0.0
        self._thread = threading.Thread(target=self._watch, name="loop-watchdog", daemon=True)

    def start(self) -> None:
        self._loop_thread = threading.get_ident()
        self._beat = time.monotonic()
        self._task = asyncio.get_running_loop().create_task(self._heartbeat())
        self._thread.start()

    async def stop(self) -> None:
        self._done.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await asyncio.to_thread(self._thread.join)

    async def _heartbeat(self) -> None:
        while True:
            now = time.monotonic()
            with self._lock:
                gap, self._beat = now - self._beat, now
                reported, self._reported = self._reported, False
            if reported:
                self.longest = max(self.longest, gap)
                LOOP_STALL_MAX.set(self.longest)
                log.warning("event loop turning again", extra={"stalled_seconds": round(gap, 2)})
            await asyncio.sleep(self.interval_s)

    def _watch(self) -> None:
        while not self._done.wait(self.interval_s):
            with self._lock:
                stalled = time.monotonic() - self._beat
                if stalled < self.threshold_s or self._reported:
                    continue
                self._reported = True
            frame = sys._current_frames().get(self._loop_thread)
            stack = "".join(traceback.format_stack(frame)[-12:]) if frame else "(no frame)"
            LOOP_STALLS.inc()
            log.warning("event loop blocked", extra={"seconds": round(stalled, 2), "stack": stack})
