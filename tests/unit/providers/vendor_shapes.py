"""Each vendor's reply shapes, for tests that script what a hostile upstream sends: a valid unary
reply and a valid stream with the usage object in its vendor's place, and how to serve them from
that vendor's fake (``Scripted`` replies)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from provider_helpers import make_spec

from aurea.providers._base import (
    Completion,
    Finish,
    Provider,
    ProviderEvent,
    TextDelta,
    Usage,
    UsageReport,
)
from aurea.providers._values import MAX_TOKEN_COUNT
from aurea.providers.anthropic import AnthropicProvider
from aurea.providers.aws_lambda import LambdaProvider
from aurea.providers.gemini import GeminiProvider
from aurea.providers.http_generic import GenericHTTPProvider
from aurea.providers.openai import OpenAIProvider
from aurea.providers.runpod import RunPodProvider
from aurea.testing.fakes import (
    FakeAnthropic,
    FakeGemini,
    FakeHTTPModel,
    FakeLambda,
    FakeOpenAI,
    FakeRunPod,
    FakeServer,
    Scripted,
)

AWS_ENV = {"AUREA_T_AK": "AKIDTEST", "AUREA_T_SK": "secret-key-test"}
DONE = b"data: [DONE]\n\n"


@dataclass(frozen=True)
class Vendor:
    """One adapter kind and the shapes of its upstream's replies."""

    kind: str
    fake: Callable[[], FakeServer]
    make: Callable[[FakeServer], Provider]
    # (input, output, cached) -> the vendor's usage object
    usage: Callable[[Any, Any, Any], Any]
    # usage object -> a valid unary reply document
    unary_doc: Callable[[Any], Any]
    # reply document -> what the fake must send for ``complete``
    unary: Callable[[Any], list[Scripted]]
    # usage object -> the documents of a valid stream
    stream_docs: Callable[[Any], list[Any]]
    # stream documents -> what the fake must send for ``stream``
    stream: Callable[[list[Any]], list[Scripted]]

    def __str__(self) -> str:
        return self.kind


def _openai_stream(usage: Any) -> list[Any]:
    return [
        {"choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {"choices": [], "usage": usage},
    ]


def _anthropic_stream(usage: Any) -> list[Any]:
    return [
        {"type": "message_start", "message": {"usage": {"input_tokens": 1}}},
        {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "hi"}},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": usage},
        {"type": "message_stop"},
    ]


def _gemini_doc(usage: Any) -> Any:
    return {
        "candidates": [
            {"content": {"parts": [{"text": "hi"}], "role": "model"}, "finishReason": "STOP"}
        ],
        "usageMetadata": usage,
    }


HTTP_OPTIONS = {
    "text_pointer": "/output/text",
    "input_tokens_pointer": "/usage/prompt_tokens",
    "output_tokens_pointer": "/usage/completion_tokens",
    "finish_reason_pointer": "/finish",
    "error_pointer": "/error/message",
    "stream_text_pointer": "/delta/text",
    "stream_require_done": True,
}


def _runpod_output(usage: Any) -> Any:
    return {"choices": [{"tokens": ["hi"]}], "usage": usage, "finish_reason": "stop"}


VENDORS = [
    Vendor(
        kind="openai",
        fake=FakeOpenAI,
        make=lambda f: OpenAIProvider(make_spec("openai", f.base_url)),
        usage=lambda i, o, c: {
            "prompt_tokens": i,
            "completion_tokens": o,
            "prompt_tokens_details": {"cached_tokens": c},
            "completion_tokens_details": {"reasoning_tokens": 1},
        },
        unary_doc=lambda u: {
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "hi"},
                    "finish_reason": "stop",
                }
            ],
            "usage": u,
        },
        unary=lambda doc: [Scripted.json(doc)],
        stream_docs=_openai_stream,
        stream=lambda docs: [Scripted.sse(*docs, done=DONE)],
    ),
    Vendor(
        kind="anthropic",
        fake=FakeAnthropic,
        make=lambda f: AnthropicProvider(make_spec("anthropic", f.base_url)),
        usage=lambda i, o, c: {
            "input_tokens": i,
            "output_tokens": o,
            "cache_read_input_tokens": c,
            "cache_creation_input_tokens": 0,
        },
        unary_doc=lambda u: {
            "type": "message",
            "content": [{"type": "text", "text": "hi"}],
            "stop_reason": "end_turn",
            "usage": u,
        },
        unary=lambda doc: [Scripted.json(doc)],
        stream_docs=_anthropic_stream,
        stream=lambda docs: [Scripted.sse(*docs)],
    ),
    Vendor(
        kind="gemini",
        fake=FakeGemini,
        make=lambda f: GeminiProvider(make_spec("gemini", f.base_url)),
        usage=lambda i, o, c: {
            "promptTokenCount": i,
            "candidatesTokenCount": o,
            "cachedContentTokenCount": c,
            "thoughtsTokenCount": 1,
        },
        unary_doc=_gemini_doc,
        unary=lambda doc: [Scripted.json(doc)],
        stream_docs=lambda u: [_gemini_doc(u)],
        stream=lambda docs: [Scripted.sse(*docs)],
    ),
    Vendor(
        kind="http",
        fake=FakeHTTPModel,
        make=lambda f: GenericHTTPProvider(
            make_spec(
                "http",
                "",
                url=f"{f.origin}/generate",
                stream_url=f"{f.origin}/generate/stream",
                headers={"X-Api-Key": "{api_key}"},
                **HTTP_OPTIONS,
            )
        ),
        usage=lambda i, o, c: {"prompt_tokens": i, "completion_tokens": o},
        unary_doc=lambda u: {"output": {"text": "hi"}, "usage": u, "finish": "stop"},
        unary=lambda doc: [Scripted.json(doc)],
        stream_docs=lambda u: [{"delta": {"text": "hi"}}, {"usage": u, "finish": "stop"}],
        stream=lambda docs: [Scripted.sse(*docs, done=DONE)],
    ),
    Vendor(
        kind="lambda",
        fake=lambda: FakeLambda(access_key=AWS_ENV["AUREA_T_AK"], secret_key=AWS_ENV["AUREA_T_SK"]),
        make=lambda f: LambdaProvider(
            make_spec(
                "lambda",
                "",
                key_env="",
                function="echo-llm",
                endpoint=f.base_url,
                access_key_env="AUREA_T_AK",
                secret_key_env="AUREA_T_SK",
                session_token_env="AUREA_T_NONE",
            )
        ),
        usage=lambda i, o, c: {"input_tokens": i, "output_tokens": o},
        unary_doc=lambda u: {"text": "hi", "usage": u, "finish_reason": "stop"},
        unary=lambda doc: [Scripted.json(doc)],
        stream_docs=lambda u: [{"text": "hi", "usage": u, "finish_reason": "stop"}],
        stream=lambda docs: [Scripted.json(docs[0])],
    ),
    Vendor(
        kind="runpod",
        fake=FakeRunPod,
        make=lambda f: RunPodProvider(
            make_spec("runpod", f.base_url, endpoint_id=f.endpoint_id, poll_interval_s=0.01)
        ),
        usage=lambda i, o, c: {"input": i, "output": o},
        unary_doc=lambda u: {"id": "job-1", "status": "COMPLETED", "output": [_runpod_output(u)]},
        unary=lambda doc: [Scripted.json(doc, path="/runsync")],
        stream_docs=lambda u: [
            {"id": "job-1", "status": "IN_QUEUE"},
            {"status": "COMPLETED", "stream": [{"output": _runpod_output(u)}]},
        ],
        stream=lambda docs: [
            Scripted.json(docs[0], path="/run"),
            Scripted.json(docs[1], path="/stream/"),
        ],
    ),
]
VENDOR_IDS = [v.kind for v in VENDORS]


def check_usage(usage: Usage) -> None:
    """Every count a whole number in [0, MAX_TOKEN_COUNT]; cached within input, reasoning within
    output (so a cost is never negative and never overflows)."""
    for value in (
        usage.input_tokens,
        usage.cached_input_tokens,
        usage.output_tokens,
        usage.reasoning_tokens,
    ):
        assert type(value) is int and 0 <= value <= MAX_TOKEN_COUNT, usage
    assert usage.cached_input_tokens <= usage.input_tokens, usage
    assert usage.reasoning_tokens <= usage.output_tokens, usage
    assert type(usage.estimated) is bool


def check_completion(completion: Completion) -> None:
    assert isinstance(completion.text, str)
    assert isinstance(completion.finish, Finish)
    assert completion.usage is not None
    check_usage(completion.usage)


def check_events(events: list[ProviderEvent]) -> Usage:
    """A well-formed stream: text deltas, one usage report, then one Finish; its usage."""
    assert events and isinstance(events[-1], Finish), events
    reports = [e for e in events if isinstance(e, UsageReport)]
    assert len(reports) == 1, events
    for event in events:
        assert isinstance(event, TextDelta | UsageReport | Finish)
        if isinstance(event, TextDelta):
            assert isinstance(event.text, str)
    check_usage(reports[0].usage)
    return reports[0].usage


# Values that break a field's type or range; each replaces one field of a valid reply.
WRONG_VALUES: list[Any] = [None, True, -7, 1e30, float("nan"), "x", [], {"z": 1}, [["deep"]]]


def paths(document: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The path of every value inside ``document`` (not the root itself)."""
    if isinstance(document, dict):
        items: Any = document.items()
    elif isinstance(document, list):
        items = enumerate(document)
    else:
        return
    for key, value in items:
        path = (*prefix, key)
        yield path
        yield from paths(value, path)


def replaced(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    """A deep copy of ``document`` with the value at ``path`` replaced."""
    out = copy.deepcopy(document)
    target = out
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return out
