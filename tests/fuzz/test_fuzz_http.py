"""Fuzzing the OpenAI-compatible HTTP door: chat and embedding bodies built with extreme values
(NaN, infinities, huge integers, deep unicode, NUL, lone surrogates escaped in JSON, deep
nesting, huge lists), arbitrary JSON and raw bytes on every route, and odd ``x-aurea-*``
headers. Whatever arrives, the door answers without a 500 (nor an in-band "bug" error in a
stream), within a timeout, and the server is idle afterwards."""

from __future__ import annotations

import http.client
import json
import math
from typing import Any

import pytest
from fuzz_harness import FUZZ, FUZZ_KEY, TALLY, Served
from hypothesis import given
from hypothesis import strategies as st

pytestmark = pytest.mark.integration

TIMEOUT_S = 30.0
BUG = b"this is a bug in Aurea"
ROUTES = [
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/embeddings"),
    ("GET", "/v1/models"),
    ("GET", "/v1/models/sim-small"),
    ("POST", "/v1/messages"),
    ("POST", "/v1/messages/count_tokens"),
]

NUMBERS = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, 0, -1, 1, 2**63, -(2**63) - 1, 10**400]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(),
)
TEXT = st.one_of(
    st.text(max_size=64),
    st.sampled_from(["", "\x00", "sim-small", "sim-embed", "auto", "\u202e", "\ud800"]),
    st.just("\U0001f600" * 200),
    st.builds(lambda n: "y" * n, st.integers(0, 100_000)),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=6), st.dictionaries(TEXT, inner, max_size=6)),
    max_leaves=30,
)
MESSAGE = st.fixed_dictionaries(
    {},
    optional={
        "role": st.one_of(
            st.sampled_from(["system", "developer", "user", "assistant", "tool", "function"]), TEXT
        ),
        "content": st.one_of(
            TEXT,
            st.lists(
                st.fixed_dictionaries(
                    {}, optional={"type": st.sampled_from(["text", "image_url", "x"]), "text": TEXT}
                ),
                max_size=4,
            ),
            JSON,
        ),
        "tool_calls": JSON,
        "name": TEXT,
    },
)
CHAT = st.fixed_dictionaries(
    {},
    optional={
        "model": st.one_of(TEXT, JSON),
        "messages": st.one_of(
            st.lists(MESSAGE, max_size=5),
            st.builds(lambda n: [{"role": "user", "content": "hi"}] * n, st.integers(0, 5000)),
            JSON,
        ),
        "max_tokens": st.one_of(NUMBERS, JSON),
        "max_completion_tokens": NUMBERS,
        "temperature": NUMBERS,
        "top_p": NUMBERS,
        "seed": NUMBERS,
        "n": NUMBERS,
        "stop": st.one_of(TEXT, st.lists(TEXT, max_size=6), JSON),
        "stream": st.one_of(st.booleans(), JSON),
        "stream_options": st.one_of(st.fixed_dictionaries({"include_usage": JSON}), JSON),
        "tools": JSON,
        "response_format": JSON,
        "aurea": st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    "job_id": st.one_of(TEXT, JSON),
                    "fallbacks": st.one_of(st.lists(TEXT, max_size=10), JSON),
                    "policy": st.one_of(TEXT, JSON),
                    "cache_bypass": JSON,
                    "labels": st.one_of(st.dictionaries(TEXT, TEXT, max_size=40), JSON),
                    "timeout_ms": NUMBERS,
                },
            ),
            JSON,
        ),
        "user": JSON,
    },
)
# Mostly valid requests (so the fuzzer reaches the core and streams too), with odd but legal
# text, sizes and options.
CHAT_VALIDISH = st.fixed_dictionaries(
    {
        "model": st.sampled_from(["sim-small", "sim-large", "auto", ""]),
        "messages": st.lists(
            st.fixed_dictionaries(
                {
                    "role": st.sampled_from(["user", "system", "assistant"]),
                    "content": st.text(min_size=1, max_size=200),
                }
            ),
            min_size=1,
            max_size=4,
        ).map(lambda ms: [*ms, {"role": "user", "content": "go"}]),
    },
    optional={
        "max_tokens": st.integers(1, 64),
        "temperature": st.floats(0, 2),
        "top_p": st.floats(0.01, 1),
        "seed": st.integers(-(2**63), 2**63 - 1),
        "stop": st.lists(st.text(min_size=1, max_size=8), max_size=4),
        "stream": st.booleans(),
        "aurea": st.fixed_dictionaries(
            {},
            optional={
                "job_id": st.text(max_size=128),
                "labels": st.dictionaries(
                    st.text(min_size=1, max_size=16), st.text(max_size=16), max_size=8
                ),
                "policy": st.sampled_from(["cost", "quality", "latency", "balanced"]),
                "fallbacks": st.lists(st.sampled_from(["sim-small", "sim-large"]), max_size=2),
                "cache_bypass": st.booleans(),
                "timeout_ms": st.integers(1, 60_000),
            },
        ),
    },
)
# Anthropic Messages bodies: every block type with odd fields, and the options around them.
BLOCK = st.fixed_dictionaries(
    {},
    optional={
        "type": st.one_of(
            st.sampled_from(
                ["text", "image", "tool_use", "tool_result", "thinking", "redacted_thinking", "x"]
            ),
            TEXT,
        ),
        "text": st.one_of(TEXT, JSON),
        "source": st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    "type": st.sampled_from(["base64", "url", "file"]),
                    "media_type": TEXT,
                    "data": TEXT,
                    "url": TEXT,
                },
            ),
            JSON,
        ),
        "id": st.one_of(TEXT, JSON),
        "name": st.one_of(TEXT, JSON),
        "input": JSON,
        "tool_use_id": st.one_of(TEXT, JSON),
        "content": JSON,
        "is_error": JSON,
        "thinking": st.one_of(TEXT, JSON),
        "signature": st.one_of(TEXT, JSON),
        "data": st.one_of(TEXT, JSON),
    },
)
MESSAGES = st.fixed_dictionaries(
    {},
    optional={
        "model": st.one_of(st.sampled_from(["sim-small", "sim-large", "sim-embed"]), TEXT, JSON),
        "max_tokens": st.one_of(st.integers(1, 64), NUMBERS, JSON),
        "messages": st.one_of(
            st.lists(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "role": st.one_of(st.sampled_from(["user", "assistant", "system"]), TEXT),
                        "content": st.one_of(TEXT, st.lists(BLOCK, max_size=4), JSON),
                    },
                ),
                max_size=5,
            ),
            JSON,
        ),
        "system": st.one_of(TEXT, st.lists(BLOCK, max_size=3), JSON),
        "stop_sequences": st.one_of(st.lists(TEXT, max_size=20), JSON),
        "stream": st.one_of(st.booleans(), JSON),
        "temperature": NUMBERS,
        "top_p": NUMBERS,
        "top_k": NUMBERS,
        "tools": st.one_of(
            st.lists(
                st.fixed_dictionaries(
                    {}, optional={"name": TEXT, "input_schema": JSON, "type": TEXT, "strict": JSON}
                ),
                max_size=3,
            ),
            JSON,
        ),
        "tool_choice": st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    "type": st.sampled_from(["auto", "any", "tool", "none", "x"]),
                    "name": TEXT,
                    "disable_parallel_tool_use": JSON,
                },
            ),
            JSON,
        ),
        "thinking": st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    "type": st.sampled_from(["enabled", "disabled", "adaptive", "x"]),
                    "budget_tokens": NUMBERS,
                    "display": JSON,
                },
            ),
            JSON,
        ),
        "output_config": st.one_of(
            st.fixed_dictionaries({}, optional={"effort": JSON, "format": JSON}), JSON
        ),
        "metadata": JSON,
    },
)
EMBED = st.fixed_dictionaries(
    {},
    optional={
        "model": st.one_of(TEXT, JSON),
        "input": st.one_of(
            TEXT,
            st.lists(st.one_of(TEXT, st.lists(st.integers(), max_size=3)), max_size=8),
            st.builds(lambda n: ["a"] * n, st.integers(0, 5000)),
            JSON,
        ),
        "encoding_format": st.one_of(st.sampled_from(["float", "base64"]), JSON),
        "dimensions": NUMBERS,
    },
)
HEADERS = st.dictionaries(
    st.sampled_from(
        [
            "x-aurea-job-id",
            "x-aurea-fallbacks",
            "x-aurea-policy",
            "x-aurea-cache-bypass",
            "x-aurea-labels",
            "x-aurea-timeout-ms",
            "x-request-id",
            "authorization",
        ]
    ),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=300),
    max_size=4,
)


def _encode(body: Any) -> bytes:
    # Python's json writes NaN/Infinity (not strict JSON: the door must refuse or reject them)
    return json.dumps(body, allow_nan=True).encode("utf-8", "surrogatepass")


def send(
    served: Served,
    target: str,
    method: str,
    path: str,
    body: bytes | None,
    headers: dict[str, str] | None = None,
) -> int:
    port = served.server.http_port
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_S)
    try:
        hdrs = {
            "content-type": "application/json",
            "authorization": f"Bearer {FUZZ_KEY}",
            **(headers or {}),
        }
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        data = resp.read()
        status = resp.status
    finally:
        conn.close()
    assert status != 500 and BUG not in data, f"{method} {path} answered {status}: {data[:500]!r}"
    assert status < 500 or status in (502, 503, 504), (status, data[:500])
    TALLY[target][str(status)] += 1
    return status


@FUZZ
@given(body=st.one_of(CHAT, CHAT_VALIDISH), headers=HEADERS)
def test_chat_bodies(served: Served, body: dict[str, Any], headers: dict[str, str]) -> None:
    send(served, "http chat bodies", "POST", "/v1/chat/completions", _encode(body), headers)


@FUZZ
@given(body=MESSAGES, headers=HEADERS, count=st.booleans())
def test_messages_bodies(
    served: Served, body: dict[str, Any], headers: dict[str, str], count: bool
) -> None:
    path = "/v1/messages/count_tokens" if count else "/v1/messages"
    send(served, "http messages bodies", "POST", path, _encode(body), headers)


@FUZZ
@given(body=EMBED)
def test_embedding_bodies(served: Served, body: dict[str, Any]) -> None:
    send(served, "http embedding bodies", "POST", "/v1/embeddings", _encode(body))


@FUZZ
@given(
    route=st.sampled_from(ROUTES),
    body=st.one_of(st.binary(max_size=2048), JSON.map(_encode)),
    name=TEXT,
)
def test_any_route_any_body(served: Served, route: tuple[str, str], body: bytes, name: str) -> None:
    method, path = route
    if path.endswith("sim-small") and name:
        from urllib.parse import quote

        path = "/v1/models/" + quote(name.encode("utf-8", "surrogatepass"), safe="")
    send(served, "http any route, any body", method, path, body if method == "POST" else None)


def test_zz_door_is_idle_after_fuzzing(served: Served) -> None:
    state = served.quiet()
    assert state["in_flight"] == 0, state
    assert send(served, "http after fuzzing", "GET", "/v1/models", None) == 200
