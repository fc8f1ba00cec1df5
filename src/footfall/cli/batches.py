"""Sending messages to a running server's batch APIs, for the commands' ``--server`` mode
(``footfall import``, ``footfall demo``): Segment messages to ``/v1/batch``, tracking events
to ``/api/analytics/batch``, in batches under the routes' limits, with the site's API key;
one sender, so both commands wait out 429/503 and report refusals alike."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from footfall.cli.common import fail
from footfall.cli.terminal import shown
from footfall.ingest.imports import Reject
from footfall.ingest.segment import MAX_BATCH_BYTES

SERVER_BATCH = 500
"""Messages a request at most: the tracking batch route's limit."""

Batch = list[tuple[int, dict[str, Any], bytes]]
"""(number, message, its JSON) of each message of one request; the number names the
message in a rejection (a line of the file for an import)."""


def batches(
    messages: list[tuple[int, dict[str, Any]]],
) -> list[Batch]:
    """Up to 500 messages and under the 500 KB batch limit each."""
    out: list[Batch] = [[]]
    size = 0
    for number, body in messages:
        encoded = json.dumps(body, separators=(",", ":")).encode()
        if out[-1] and (
            len(out[-1]) >= SERVER_BATCH or size + len(encoded) > MAX_BATCH_BYTES - 1024
        ):
            out.append([])
            size = 0
        out[-1].append((number, body, encoded))
        size += len(encoded) + 1
    return [batch for batch in out if batch]


def send_batch(
    base: str, key: str, kind: str, site: str | None, batch: Batch
) -> tuple[int, list[Reject]]:
    """One request (``kind``: ``segment`` or ``tracking``); the messages accepted, and each
    refused one with its number and the server's reason."""
    items = b",".join(encoded for _, _, encoded in batch)
    if kind == "segment":
        # The key's authority decides: another site of its tenant by ?site=, else refused.
        query = f"?site={urllib.parse.quote(site)}" if site else ""
        path, body = f"/v1/batch{query}", b'{"batch":[' + items + b"]}"
    else:
        named = f',"site":{json.dumps(site)}' if site else ""
        path, body = "/api/analytics/batch", b'{"events":[' + items + b"]" + named.encode() + b"}"
    answer = post(base + path, key, body)
    lines = [number for number, _, _ in batch]
    if kind == "segment":
        refused = [
            Reject(lines[r["index"]], r["error"]["message"]) for r in answer.get("rejected", [])
        ]
    else:
        refused = [
            Reject(lines[r["index"]], r["error"]["message"])
            for r in answer["results"]
            if not r["success"]
        ]
    return len(batch) - len(refused), refused


def post(url: str, key: str, body: bytes) -> dict[str, Any]:
    """POST with the API key; waits out 429 and 503 (up to 30 tries)."""
    for _ in range(30):
        request = urllib.request.Request(  # noqa: S310 - the operator's own server URL
            url,
            data=body,
            method="POST",
            headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=120) as answer:  # noqa: S310
                result: dict[str, Any] = json.loads(answer.read())
                return result
        except urllib.error.HTTPError as exc:
            if exc.code in (429, 503):
                time.sleep(min(60.0, float(exc.headers.get("retry-after") or 1)))
                continue
            try:
                message = json.loads(exc.read())["error"]["message"]
            except Exception:
                message = str(exc)
            raise fail(f"{url}: {shown(message)}") from None
        except urllib.error.URLError as exc:
            raise fail(f"cannot reach {url}: {exc.reason}") from None
    raise fail(f"{url} kept answering 429/503; try again later")
