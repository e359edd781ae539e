"""The Router actor: owns routing state (the catalog, the allow/deny lists, the policies; later
live stats and learned weights) and publishes it as an immutable ``RoutingTable`` on a
``RouterView``, which the inference core reads without a mailbox hop.

``Route`` is still answered (for callers that prefer to ask), from the same table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, assert_never

from aurea.config import ModelSpec, RoutingSettings
from aurea.routing import Candidate, RouterView, RoutingTable
from aurea.runtime import Actor, Ask
from aurea.types import Policy

__all__ = ["Candidate", "ListModels", "Policy", "Route", "Router", "RouterMsg"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Route(Ask[tuple[Candidate, ...]]):
    """Ask for the candidates of one call. ``model`` empty = choose by ``policy``."""

    model: str
    kind: str = "chat"  # chat | embedding
    policy: Policy | None = None
    fallbacks: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ListModels(Ask[list[ModelSpec]]):
    """Ask for the catalog entries that may be served."""


RouterMsg = Route | ListModels


class Router(Actor[RouterMsg]):
    def __init__(
        self,
        *,
        models: Mapping[str, ModelSpec],
        settings: RoutingSettings,
        view: RouterView | None = None,
    ) -> None:
        self._table = RoutingTable(models=models, settings=settings)
        self._view = view

    async def on_start(self) -> None:
        if self._view is not None:
            self._view.table = self._table

    async def receive(self, msg: RouterMsg) -> Any:
        match msg:
            case Route():
                return self._table.route(msg.model, msg.kind, msg.policy, msg.fallbacks)
            case ListModels():
                return self._table.permitted_models()
            case _:
                assert_never(msg)
