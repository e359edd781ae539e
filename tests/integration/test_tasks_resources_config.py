"""``[tasks.resource_pools.NAME]`` tables: parsed into settings, bad ones refused by key."""

from __future__ import annotations

from typing import Any

import pytest

from aurea import testing
from aurea.config import ConfigError, ResourcePoolSettings


def _pools(table: dict[str, Any]) -> tuple[ResourcePoolSettings, ...]:
    settings = testing.test_settings({"tasks": {"pools": ["res=2"], "resource_pools": table}})
    return settings.tasks.resource_pools


def test_a_table_becomes_a_resource_pool() -> None:
    (pool,) = _pools({"res": {"max_resources": 3, "autoscale": True, "idle_release_s": 5}})
    assert pool == ResourcePoolSettings(
        name="res", max_resources=3, autoscale=True, idle_release_s=5.0
    )


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"res": {"backend": "vmware"}}, "tasks.resource_pools.res.backend"),
        ({"res": {"max_cpus": 1}}, "tasks.resource_pools.res.max_cpus"),
        ({"res": {"max_resources": 0}}, "tasks.resource_pools.res.max_resources"),
        ({"res": {"autoscale": 1}}, "tasks.resource_pools.res.autoscale"),
        ({"res": 3}, "tasks.resource_pools.res"),
    ],
)
def test_bad_tables_are_refused(table: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _pools(table)
    assert key in str(caught.value)
