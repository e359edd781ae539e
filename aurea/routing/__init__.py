"""Routing: how a call's model choice becomes an ordered list of candidates, and how the router
scores models from what calls taught it.

``RoutingTable`` is the immutable snapshot the inference core routes from (published by the
Router actor on a ``RouterView``); ``_score`` holds the scoring arithmetic and ``_figures`` turns
recorded stats into the figures a model is scored on.
"""

from aurea.routing._figures import effective_weight, figures_for, first_token_key, split_rows
from aurea.routing._records import RecordInbox
from aurea.routing._score import (
    WEIGHT_SUM_TOLERANCE,
    Factor,
    FactorScores,
    Figures,
    Optimized,
    Weights,
    factor_scores,
    inverse_ratio,
    optimize,
    rank,
    weight_problems,
)
from aurea.routing._store import StatsStore, open_stats_store
from aurea.routing._table import (
    AUTO,
    POLICY_WEIGHTS,
    Candidate,
    Health,
    RouterView,
    RoutingTable,
    Scored,
    Selection,
    default_weights,
    permitted_names,
)

__all__ = [
    "AUTO",
    "POLICY_WEIGHTS",
    "WEIGHT_SUM_TOLERANCE",
    "Candidate",
    "Factor",
    "FactorScores",
    "Figures",
    "Health",
    "Optimized",
    "RecordInbox",
    "RouterView",
    "RoutingTable",
    "Scored",
    "Selection",
    "StatsStore",
    "Weights",
    "default_weights",
    "effective_weight",
    "factor_scores",
    "figures_for",
    "first_token_key",
    "inverse_ratio",
    "open_stats_store",
    "optimize",
    "permitted_names",
    "rank",
    "split_rows",
    "weight_problems",
]
