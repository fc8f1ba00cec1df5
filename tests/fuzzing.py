"""The fuzzing harness shared by tests/test_fuzz.py (short runs) and bench/fuzz.py (long runs).

Schemathesis reads the server's own ``/openapi.json`` and sends positive (schema-valid) and
negative (schema-violating) requests to every operation; each answer is checked for: no 5xx,
a documented status, the documented content type and body schema, negative data rejected,
keyed operations refusing missing or wrong keys, and the error code the README's error table
gives for that status. A tally counts the events each answer acknowledged, so the caller can
compare it with the DuckDB file after a clean stop.
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, CheckContext, GenerationMode, Response
from schemathesis.checks import CheckFunction, not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi import checks as openapi_checks

ERROR_CODES: Mapping[int, frozenset[str]] = {
    400: frozenset({"ANALYTICS_001", "ANALYTICS_002", "VALIDATION_ERROR", "BAD_REQUEST"}),
    401: frozenset({"UNAUTHORIZED"}),
    403: frozenset({"ORIGIN_NOT_ALLOWED", "FORBIDDEN"}),
    404: frozenset({"NOT_FOUND"}),
    405: frozenset({"METHOD_NOT_ALLOWED"}),
    408: frozenset({"REQUEST_TIMEOUT"}),
    409: frozenset({"NO_DIRECT_LINK", "CONFLICT"}),
    414: frozenset({"URI_TOO_LONG"}),
    422: frozenset({"VALIDATION_ERROR"}),
    429: frozenset({"RATE_LIMITED"}),
    431: frozenset({"HEADERS_TOO_LARGE"}),
    503: frozenset({"SERVICE_UNAVAILABLE"}),
}
"""Status -> error codes, as the README's error table documents them."""

TRACK_PATHS = frozenset({"/api/analytics/track", "/api/events/track", "/api/save"})
BATCH_PATH = "/api/analytics/batch"


def _fuzz_settings(examples: int) -> settings:
    """Fresh examples every run (no example database), no deadlines on a busy machine."""
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.generate],
    )


def rejection_problem(status: int, headers: Mapping[str, str], body: bytes) -> str | None:
    """Why a 4xx/5xx answer breaks the documented error contract, or None if it keeps it."""
    if status >= 500 and status != 503:
        return f"server error {status}: {body[:300]!r}"
    codes = ERROR_CODES.get(status)
    if codes is None:
        return f"undocumented error status {status}"
    try:
        error = json.loads(body)["error"]
        code, message = error["code"], error["message"]
    except (ValueError, KeyError, TypeError):
        return f"{status} without a JSON error body: {body[:300]!r}"
    if code not in codes:
        return f"{status} with code {code!r}, documented: {sorted(codes)}"
    if not isinstance(message, str) or not message:
        return f"{status} {code} without a message"
    if status == 422 and not error.get("field"):
        return f"422 without the offending field: {message}"
    if status in (429, 503) and "retry-after" not in {k.lower() for k in headers}:
        return f"{status} without Retry-After"
    return None


def events_acknowledged(method: str, path: str, status: int, body: bytes) -> tuple[int, int]:
    """(events this answer says were stored, events it says were erased)."""
    if status != 200:
        return 0, 0
    if path in TRACK_PATHS or path == "/e":
        if path == "/e":
            return 1, 0  # a GIF: stored (no erased name is ever sent before the erase phase)
        answer = json.loads(body)
        return (0 if answer.get("erased") else 1), 0
    if path == BATCH_PATH and method == "POST":
        answer = json.loads(body)
        stored = sum(1 for r in answer["results"] if r["success"] and not r.get("erased"))
        return stored, 0
    if path.startswith("/v1/") and method == "POST":
        return int(json.loads(body).get("stored", 0)), 0
    if path.startswith("/api/persons/") and method == "DELETE":
        return 0, int(json.loads(body)["erased"]["events"])
    return 0, 0


@dataclass
class Tally:
    """What a fuzzing run sent and what the server acknowledged."""

    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    by_operation: Counter[str] = field(default_factory=Counter)
    acknowledged: int = 0
    erased: int = 0
    failures: list[str] = field(default_factory=list)

    def record(self, label: str, method: str, path: str, status: int, body: bytes) -> None:
        self.requests += 1
        self.statuses[status] += 1
        self.by_operation[label] += 1
        stored, erased = events_acknowledged(method, path, status, body)
        self.acknowledged += stored
        self.erased += erased

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)

    @property
    def expected_stored(self) -> int:
        return self.acknowledged - self.erased


def documented_error_code(ctx: CheckContext, response: Response, case: Case[Any]) -> bool | None:
    """Schemathesis check: a rejection carries the code the README documents for its status."""
    if response.status_code < 400:
        return None
    headers = {name: values[0] for name, values in response.headers.items() if values}
    problem = rejection_problem(response.status_code, headers, response.content)
    if problem is not None:
        raise AssertionError(problem)
    return True


CHECKS: list[CheckFunction] = [
    not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_schema_conformance,
    openapi_checks.negative_data_rejection,
    openapi_checks.ignored_auth,
    documented_error_code,
]


def client_ips(prefix: str) -> Iterator[str]:
    """Distinct client IPs (spoken through the trusted loopback proxy): no rate limit hits."""
    for a, b in itertools.product(range(256), range(1, 255)):
        yield f"{prefix}.{a}.{b}"


def _describe(failure: BaseException, case: Case[Any]) -> str:
    text = f"{case.operation.label}: {failure}\n{case.as_curl_command()}"
    return text if len(text) < 3000 else text[:3000] + " ..."


def run_schemathesis(
    base_url: str,
    key: str,
    examples: int,
    tally: Tally,
    ips: Iterator[str],
    progress: Callable[[str], None] | None = None,
) -> None:
    """Up to ``examples`` positive and ``examples`` negative cases per operation.

    Erasing operations (DELETE) run last, so no event is sent for a name after it was erased
    (those are answered 200 and dropped, which the tally could not tell from a stored one).
    """
    config = schemathesis.Config.from_dict(
        {
            # Unknown query parameters are ignored (or, on /e and /s, kept as properties).
            "generation": {"allow-extra-parameters": False},
            "auth": {
                "openapi": {
                    "apiKey": {"bearer": key},
                    "apiKeyHeader": {"api_key": key},
                    "vendorKey": {"api_key": key},
                }
            },
        }
    )
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", config=config)
    operations = []
    for result in schema.get_all_operations():
        if not isinstance(result, Ok):
            raise AssertionError(f"the OpenAPI document has an unusable operation: {result.err()}")
        operations.append(result.ok())
    operations.sort(key=lambda op: (op.method.upper() == "DELETE", op.label))
    session = requests.Session()
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @_fuzz_settings(examples)
            @given(case=operation.as_strategy(generation_mode=mode))
            def send(case: Case[Any]) -> None:
                headers = {"x-forwarded-for": next(ips)}
                response = case.call(session=session, headers=headers)
                tally.record(
                    case.operation.label,
                    case.method.upper(),
                    case.formatted_path,
                    response.status_code,
                    response.content,
                )
                try:
                    case.validate_response(
                        response,
                        checks=CHECKS,
                        headers=headers,
                        transport_kwargs={"session": session, "headers": headers},
                    )
                except BaseExceptionGroup as failures:  # schemathesis' FailureGroup
                    tally.failures.extend(_describe(f, case) for f in failures.exceptions)

            with contextlib.suppress(Unsatisfiable):  # no parameters: nothing negative to send
                send()
            if progress is not None:
                progress(f"{operation.label} {mode.value}")


# --------------------------------------------------------------------------- hypothesis

ENDPOINTS = [
    ("POST", "/api/analytics/track"),
    ("POST", "/api/events/track"),
    ("POST", "/api/save"),
    ("POST", "/api/analytics/batch"),
    ("POST", "/api/identify"),
    ("GET", "/api/analytics/track"),
    ("GET", "/api/events/track"),
    ("OPTIONS", "/api/analytics/track"),
    ("OPTIONS", "/api/analytics/batch"),
    ("OPTIONS", "/api/identify"),
    ("POST", "/api/alias"),
    ("POST", "/v1/batch"),
    ("POST", "/v1/track"),
    ("POST", "/v1/t"),
    ("OPTIONS", "/v1/batch"),
    ("GET", "/e"),
    ("GET", "/api/reports/overview"),
    ("GET", "/footfall.js"),
    ("GET", "/healthz"),
    ("PUT", "/api/analytics/track"),
    ("GET", "/no/such/route"),
]
SHOP, OTHER = "https://shop.test", "https://other.test"
ALLOWED_ORIGINS = {SHOP, OTHER, "http://127.0.0.1"}
"""What tests/conftest.py's CONFIG allows (and subdomains of shop.test)."""

# Header values a client can send: visible latin-1 and inner spaces (h11 refuses CR, LF, NUL).
header_text = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0xFF, exclude_categories=["Cc"]),
    max_size=60,
).map(lambda s: s.encode("latin-1"))
origins = st.sampled_from(
    [
        SHOP,
        "https://www.shop.test",
        "HTTPS://SHOP.TEST:443",
        OTHER,
        "https://evil.test",
        "http://shop.test",
        "https://shop.test.evil.test",
        "null",
        "*",
        "http://[abc",
        "http://127.0.0.1",
        "javascript:alert(1)",
    ]
).map(str.encode)
referers = st.sampled_from(
    [f"{SHOP}/cart", "https://evil.test/x", "http://[abc/", "//no-scheme", "not a url", ""]
).map(str.encode)
forwarded = st.sampled_from(
    ["203.0.113.5", "garbage", "::1", "1.2.3.4, 5.6.7.8", "[::1]:80", ",,,", "10.0.0.1 , x"]
).map(str.encode)
HEADER_VALUES = {
    b"origin": origins | header_text,
    b"referer": referers | header_text,
    b"x-forwarded-for": forwarded | header_text,
    b"content-type": st.sampled_from(
        [b"application/json", b"text/plain", b"application/x-www-form-urlencoded", b"*/*"]
    )
    | header_text,
    b"user-agent": header_text | st.just(b"u" * 5000),
    b"authorization": st.sampled_from([b"Bearer", b"Bearer ff_000000000000_x", b"Basic x"])
    | header_text,
    b"x-api-key": header_text,
    b"cookie": header_text,
    b"access-control-request-method": st.sampled_from([b"POST", b"GET", b"DELETE", b""]),
    b"content-encoding": st.sampled_from([b"gzip", b"br", b"identity"]),
}
headers_strategy = st.lists(
    st.sampled_from(sorted(HEADER_VALUES)).flatmap(
        lambda name: st.tuples(st.just(name), HEADER_VALUES[name])
    ),
    max_size=5,
    unique_by=lambda pair: pair[0],
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=10,
)
event_names = st.sampled_from(["visitor", "purchase", "tracktrans", "message_sent", "nope", ""])
tokens = st.sampled_from(["fuzz-token-0001", "fuzz-token-0002", "short", "x" * 129, ""])
events = st.fixed_dictionaries(
    {"event": event_names, "token": tokens},
    optional={
        "data": st.dictionaries(
            st.sampled_from(["orderNum", "items", "value", "currency", "chatbot_id", "text"]),
            json_values,
            max_size=4,
        ),
        "ts": json_values,
        "ab_test": json_values,
        "site": st.sampled_from(["default", "other", "nosuch"]),
    },
)


segment_messages = st.fixed_dictionaries(
    {"type": st.sampled_from(["track", "page", "identify", "alias", "group", "nope"])},
    optional={
        "anonymousId": st.sampled_from(["fuzz-anon-0001", "has space", "", "x" * 200])
        | json_values,
        "userId": st.sampled_from(["fuzz-user-1", ""]) | json_values,
        "event": event_names | st.sampled_from(["Order Completed", "Signed Up"]) | json_values,
        "messageId": st.sampled_from(["fuzz-m-1", "fuzz-m-2"]) | json_values,
        "properties": st.dictionaries(
            st.sampled_from(["revenue", "products", "order_id", "currency", "price"]),
            json_values,
            max_size=3,
        ),
        "traits": st.dictionaries(st.sampled_from(["email", "name"]), json_values, max_size=2),
        "timestamp": st.sampled_from(["2026-11-02T10:00:00Z", "yesterday", "1999-01-01"])
        | json_values,
        "sentAt": st.sampled_from(["2026-11-02T10:00:05Z", "+99999-01-01"]) | json_values,
        "previousId": st.sampled_from(["fuzz-anon-0002", ""]) | json_values,
        "groupId": json_values,
        "context": json_values,
    },
)


def encode(value: Any) -> bytes:
    return json.dumps(value).encode()


bodies = st.one_of(
    events.map(encode),
    st.lists(events, max_size=5).map(encode),
    st.fixed_dictionaries({"events": st.lists(events, max_size=5)}).map(encode),
    segment_messages.map(encode),
    st.fixed_dictionaries({"batch": st.lists(segment_messages, max_size=5)}).map(encode),
    json_values.map(encode),
    st.binary(max_size=200),
    events.map(encode).flatmap(lambda b: st.integers(0, len(b)).map(lambda n: b[:n])),
    st.integers(1, 60_000).map(lambda n: b"[" * n),
    st.just(b'{"event":"visitor","token":"fuzz-token-0003","data":{"x":"\xff\xfe"}}'),
    st.just(b"\xef\xbb\xbf" + encode({"event": "visitor", "token": "fuzz-token-0004"})),
    st.integers(49_990, 50_010).map(
        lambda n: encode(
            {"event": "visitor", "token": "fuzz-token-0005", "data": {"p": ""}}
        ).replace(b'"p": ""', b'"p": "' + b"x" * (n - 70) + b'"')
    ),
)
queries = st.dictionaries(
    st.sampled_from(["e", "u", "d", "ab_test", "site", "cookie", "_k", "_p", "_n", "days", "x"]),
    st.text(max_size=40) | st.sampled_from(["visitor", "fuzz-token-0006", "²", "9" * 5000]),
    max_size=4,
)


def cors_problem(answer: httpx.Response) -> str | None:
    """CORS headers are only ever given to an allowed origin, and never with a 403."""
    allowed = answer.headers.get("access-control-allow-origin")
    if allowed is None:
        return None
    if answer.status_code == 403:
        return f"CORS headers on a 403: {allowed}"
    if allowed not in ALLOWED_ORIGINS and not allowed.endswith(".shop.test"):
        return f"CORS headers for {allowed}"
    return None


def run_garbled(base_url: str, key: str, examples: int, tally: Tally, ips: Iterator[str]) -> None:
    """Hypothesis-made requests to every public endpoint (and a few others); every answer
    is checked and tallied, problems are collected in ``tally.failures``."""

    @_fuzz_settings(examples)
    @given(
        endpoint=st.sampled_from(ENDPOINTS),
        headers=headers_strategy,
        body=bodies,
        query=queries,
        use_key=st.booleans(),
    )
    def send(
        endpoint: tuple[str, str],
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        query: dict[str, str],
        use_key: bool,
    ) -> None:
        method, path = endpoint
        sent = [(b"x-forwarded-for", next(ips).encode()), *headers]
        if use_key:
            sent.append((b"authorization", f"Bearer {key}".encode()))
            query = {**query, "_k": key} if path == "/e" else query
        url = f"{path}?{urlencode(query)}" if query else path
        with httpx.Client(base_url=base_url, timeout=60) as client:
            answer = client.request(
                method, url, content=body if method == "POST" else None, headers=sent
            )
        tally.record(f"{method} {path}", method, path, answer.status_code, answer.content)
        problems = [cors_problem(answer)]
        if answer.status_code >= 400:
            problems.append(rejection_problem(answer.status_code, answer.headers, answer.content))
        for problem in filter(None, problems):
            tally.failures.append(f"{problem}: {method} {url} {headers} {body[:200]!r}")

    send()
