"""Runs one published Segment-style server library, unchanged, in a process of its own:
segment-analytics-python 2.x, rudder-sdk-python, or analytics-python 1.x (whose pins
conflict with the others', so scripts/test installs it apart, in .venv/legacy-segment-client).

A process of its own because a library that retries does so in a daemon thread for minutes:
the test's wait stays bounded, and nothing keeps sending after it. ``run`` hands this file a
job (JSON on stdin) and returns what the library reported (``on_error``), whether its queue
was flushed within the wait, and what it logged."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LIBRARIES = {
    "segment-analytics-python": "segment.analytics.client",
    "rudder-sdk-python": "rudderstack.analytics.client",
    "analytics-python-1": "analytics.client",
}
LEGACY = Path(sys.prefix) / "legacy-segment-client"
"""Where scripts/test installs analytics-python 1.x (the legacy-segment-client extra)."""


@dataclass
class Outcome:
    errors: list[dict[str, Any]]
    """Each ``on_error(error, batch)``: the error's type, status, code, message; batch size."""
    flushed: bool
    """Whether the library's queue emptied within the wait (it is not retrying)."""
    log: str
    """What the library logged (stderr)."""


def run(
    library: str,
    host: str,
    write_key: str,
    messages: list[dict[str, Any]],
    wait: float = 20.0,
    **options: Any,
) -> Outcome:
    """Send ``messages`` (keyword arguments of ``Client.track``) with ``library``'s Client
    built with ``options``; wait at most ``wait`` seconds for its queue to flush."""
    env = dict(os.environ)
    if library == "analytics-python-1":
        if not (LEGACY / "analytics").is_dir():
            raise RuntimeError(f"{LEGACY} is missing: scripts/test installs analytics-python 1.x")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(LEGACY), env.get("PYTHONPATH")]))
    job = {"library": library, "host": host, "key": write_key, "messages": messages}
    done = subprocess.run(
        [sys.executable, __file__],
        input=json.dumps({**job, "wait": wait, "options": options}),
        capture_output=True,
        text=True,
        env=env,
        timeout=wait + 60,
        check=True,
    )
    answer = json.loads(done.stdout)
    return Outcome(answer["errors"], answer["flushed"], done.stderr)


def _main() -> None:
    job = json.load(sys.stdin)
    module = importlib.import_module(LIBRARIES[job["library"]])
    errors: list[dict[str, Any]] = []

    def on_error(error: Exception, batch: list[Any]) -> None:
        errors.append(
            {
                "type": type(error).__name__,
                "status": getattr(error, "status", None),
                "code": getattr(error, "code", None),
                "message": getattr(error, "message", str(error)),
                "messages": len(batch),
            }
        )

    client = module.Client(job["key"], host=job["host"], on_error=on_error, **job["options"])
    for message in job["messages"]:
        client.track(**message)
    flushed = threading.Event()

    def flush() -> None:
        client.flush()
        flushed.set()

    threading.Thread(target=flush, daemon=True).start()
    flushed.wait(job["wait"])
    print(json.dumps({"errors": errors, "flushed": flushed.is_set()}), flush=True)
    sys.stderr.flush()
    os._exit(0)  # the library's thread may still be retrying: it goes with the process


if __name__ == "__main__":
    _main()
