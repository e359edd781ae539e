"""``[redis] cluster``: off by default, set from TOML or ``AUREA_REDIS_CLUSTER``, and refused with
a URL no Redis Cluster can serve (a unix socket, a database other than 0)."""

from __future__ import annotations

import pytest

from aurea.config import ConfigError, build_settings


def test_cluster_is_off_by_default_and_set_from_toml_or_env() -> None:
    assert build_settings({}, {}).redis.cluster is False
    raw = {"redis": {"url": "redis://10.0.0.1:7000/0", "cluster": True}}
    assert build_settings(raw, {}).redis.cluster is True
    env = {"AUREA_REDIS_URL": "rediss://node1:7000", "AUREA_REDIS_CLUSTER": "true"}
    assert build_settings({}, env).redis.cluster is True


@pytest.mark.parametrize(
    ("url", "problem"),
    [("unix:///run/redis.sock", "redis://"), ("redis://10.0.0.1:7000/2", "database 0")],
)
def test_cluster_refuses_a_url_a_cluster_cannot_serve(url: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=r"redis\.cluster") as err:
        build_settings({"redis": {"url": url, "cluster": True}}, {})
    assert problem in str(err.value)
    assert build_settings({"redis": {"url": url}}, {}).redis.cluster is False
