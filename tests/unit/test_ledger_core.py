"""The ledger guard inside the inference core (simulated provider, no network): the call's
principal picks its default job, a unary answer billed past the budget comes back marked and
charged within it, and a stream stops before the delta that would cross its budget."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from aurea.actors.provider import ProviderActor, ProviderBook
from aurea.config import RetrySettings, build_settings
from aurea.inference import Delta, GenerateCall, GenEvent, Inference
from aurea.ledger import LedgerBook, LedgerGuard
from aurea.providers._base import ChatMessage, Completion, FinishReason, ProviderRequest, Role
from aurea.providers.registry import build_provider
from aurea.routing import RouterView, RoutingTable
from aurea.runtime import ActorSystem
from aurea.stores.memory import MemoryLedgerStore

TOKENS = 40


@dataclass
class Core:
    inference: Inference
    book: LedgerBook
    provider: Overbilling


class Overbilling:
    """The simulated provider, whose unary answers can bill ``extra_output`` hidden output
    tokens (reasoning past ``max_tokens``): more than any reservation could foresee."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.extra_output = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def complete(self, request: ProviderRequest) -> Completion:
        done: Completion = await self._inner.complete(request)
        if self.extra_output and done.usage is not None:
            more = done.usage.output_tokens + self.extra_output
            done = dataclasses.replace(
                done, usage=dataclasses.replace(done.usage, output_tokens=more)
            )
        return done


@pytest.fixture
async def core() -> AsyncIterator[Core]:
    settings = build_settings(
        {
            "providers": {
                "sim": {
                    "kind": "simulated",
                    "options": {"token_delay_ms": 0, "min_tokens": TOKENS, "max_tokens": TOKENS},
                }
            },
            "models": {
                "m": {"provider": "sim", "input_usd_per_mtok": "1", "output_usd_per_mtok": "10"}
            },
            "routing": {"default_model": "m"},
        }
    )
    system = ActorSystem()
    provider = Overbilling(build_provider(settings.providers["sim"]))
    ref = system.spawn(
        "provider:sim",
        lambda: ProviderActor(
            provider=provider, kind="simulated", max_concurrency=8, book=ProviderBook()
        ),
    )
    book = LedgerBook(
        MemoryLedgerStore(), default_budget_nanos=10**9, lease_ttl_s=60, durable=False
    )
    await book.start()
    inference = Inference(
        view=RouterView(RoutingTable(models=settings.models, settings=settings.routing)),
        providers={"sim": ref},
        retry=RetrySettings(max_retries=0),
        ask_timeout_s=5.0,
        guards=[LedgerGuard(book)],
    )
    async with system:
        yield Core(inference, book, provider)
    await book.stop()


def _call(job: str = "", principal: str = "", max_tokens: int = TOKENS) -> GenerateCall:
    return GenerateCall(
        request_id="r",
        messages=(ChatMessage(Role.USER, "the ledger keeps every nano-dollar"),),
        job_id=job,
        principal=principal,
        max_tokens=max_tokens,
    )


async def test_the_principal_picks_the_default_job(core: Core) -> None:
    final = await core.inference.generate(_call(principal="k9"))
    view = await core.book.get_job("default:k9")
    assert view is not None and view.spent_nanos == final.cost_nanos > 0
    assert await core.book.get_job("default") is None


async def test_a_unary_answer_billed_past_the_budget_is_returned_charged_within_it(
    core: Core,
) -> None:
    # The provider bills far more output than the call's max_tokens (hidden reasoning), so the
    # bill crosses the budget though the reservation (prompt estimate and max_tokens) fit.
    budget = 10**6  # more than the reservation, far less than the bill
    core.provider.extra_output = 1000
    await core.book.set_budget("tight", budget)
    final = await core.inference.generate(_call(job="tight"))
    assert final.finish_reason is FinishReason.BUDGET_EXCEEDED
    assert final.text
    view = await core.book.get_job("tight")
    assert view is not None
    assert view.spent_nanos == final.cost_nanos == budget
    assert view.reserved_nanos == 0


async def test_a_stream_stops_before_the_delta_that_would_cross(core: Core) -> None:
    budget = 20 * 10_000  # half the answer's output
    await core.book.set_budget("half", budget)
    sent: list[str] = []

    async def emit(ev: GenEvent) -> None:
        if isinstance(ev, Delta):
            sent.append(ev.text)

    # A max_tokens the budget can reserve; the estimate then grows past it mid-answer.
    final = await core.inference.stream(_call(job="half", max_tokens=15), emit)
    assert final.finish_reason is FinishReason.BUDGET_EXCEEDED
    assert 0 < len(sent) < 15
    view = await core.book.get_job("half")
    assert view is not None
    assert view.spent_nanos == final.cost_nanos <= budget and view.reserved_nanos == 0
