"""Fake upstream providers for tests and benchmarks: aiohttp servers on 127.0.0.1 that speak each
vendor's documented wire format (paths, auth headers and their 401 bodies, status codes, SSE
framing, usage placement, error bodies), with injectable faults.

Typical use::

    async with FakeOpenAI(api_key="sk-test", token_delay_s=0.01) as fake:
        spec = ProviderSpec(name="openai", kind="openai", base_url=fake.base_url, ...)
        fake.inject(Fault(FaultKind.RATE_LIMIT, retry_after="3"))
        ...
        assert fake.request_count == 1
"""

from __future__ import annotations

from aurea.testing.fakes._core import (
    FakeServer,
    Fault,
    FaultKind,
    RecordedRequest,
    Scripted,
    continue_after,
    echo_reply,
)
from aurea.testing.fakes.anthropic import FakeAnthropic
from aurea.testing.fakes.aws_lambda import FakeLambda
from aurea.testing.fakes.gemini import FakeGemini
from aurea.testing.fakes.http_generic import FakeHTTPModel
from aurea.testing.fakes.openai import FakeOpenAI
from aurea.testing.fakes.runpod import FakeRunPod

__all__ = [
    "FakeAnthropic",
    "FakeGemini",
    "FakeHTTPModel",
    "FakeLambda",
    "FakeOpenAI",
    "FakeRunPod",
    "FakeServer",
    "Fault",
    "FaultKind",
    "RecordedRequest",
    "Scripted",
    "continue_after",
    "echo_reply",
]
