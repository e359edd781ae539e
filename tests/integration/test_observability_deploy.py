"""The deploy files hold together: the Grafana dashboard's structure (seed 000's eight panels plus
Aurea's, each query against the provisioned datasource), the provisioning files, the Dockerfile
(multi-stage, non-root, health check) and docker-compose.yml (the five services, seed 000's
ports, Grafana's admin/admin, every mounted file present).

``docker compose config`` is not available offline here, so the compose file is read by a small
reader of the YAML subset it uses (block mappings and lists, flow lists, quoted scalars); where
PyYAML is installed the two readings must agree. Every query of every panel is run against a
real Prometheus in ``test_prometheus.py``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SEED_000_PANELS = (
    "Latency p50 / p95",
    "Total tokens",
    "Total cost",
    "Token rate by model",
    "Cost per minute by model",
    "Task rate",
    "Active tasks",
    "Request rate",
)


# -- a reader for the YAML subset of the compose and provisioning files ------------------------
def _scalar(text: str) -> Any:
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        inner = text[1:-1].strip()
        return [_scalar(part) for part in re.findall(r'"[^"]*"|\'[^\']*\'|[^,\s][^,]*', inner)]
    if text.startswith(("'", '"')) and text.endswith(text[0]) and len(text) > 1:
        return text[1:-1]
    if text in ("true", "false"):
        return text == "true"
    if text == "{}":
        return {}
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    return text


def _strip_comment(line: str) -> str:
    quote = ""
    for i, ch in enumerate(line):
        if ch in "\"'" and not quote:
            quote = ch
        elif ch == quote:
            quote = ""
        elif ch == "#" and not quote and (i == 0 or line[i - 1] == " "):
            return line[:i].rstrip()
    return line.rstrip()


def read_yaml_subset(text: str) -> Any:
    lines = [
        (len(ln) - len(ln.lstrip(" ")), ln.strip()) for ln in map(_strip_comment, text.split("\n"))
    ]
    lines = [(ind, ln) for ind, ln in lines if ln]
    pos = 0

    def block(indent: int) -> Any:
        nonlocal pos
        if lines[pos][1].startswith("- "):
            items: list[Any] = []
            while pos < len(lines) and lines[pos][0] == indent and lines[pos][1].startswith("- "):
                rest = lines[pos][1][2:]
                if re.match(r"^[\w.-]+:(\s|$)", rest):  # a mapping inside a list item
                    lines[pos] = (indent + 2, rest)
                    items.append(block(indent + 2))
                else:
                    items.append(_scalar(rest))
                    pos += 1
            return items
        mapping: dict[str, Any] = {}
        while pos < len(lines) and lines[pos][0] == indent:
            key, sep, value = lines[pos][1].partition(":")
            assert sep, f"not a mapping entry: {lines[pos][1]!r}"
            pos += 1
            if value.strip() in ("", "|"):
                assert value.strip() == "", "block scalars are outside the subset"
                nested = pos < len(lines) and lines[pos][0] > indent
                mapping[key] = block(lines[pos][0]) if nested else None
            else:
                mapping[key] = _scalar(value)
        assert pos == len(lines) or lines[pos][0] < indent, f"bad indent at {lines[pos]}"
        return mapping

    result = block(0)
    assert pos == len(lines)
    return result


def load(path: Path) -> Any:
    data = read_yaml_subset(path.read_text())
    try:
        import yaml  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        return data
    assert yaml.safe_load(path.read_text()) == data, f"the subset reader misreads {path}"
    return data


# -- tests --------------------------------------------------------------------------------------
def test_dashboard_structure() -> None:
    dash = json.loads((DEPLOY / "grafana" / "dashboards" / "aurea.json").read_text())
    assert dash["uid"] and dash["title"] == "Aurea" and dash["schemaVersion"] >= 36
    titles = [p["title"] for p in dash["panels"]]
    for title in SEED_000_PANELS:
        assert title in titles
    for extra in ("Time to first token p50 / p95", "Fallbacks by cause", "Breaker state"):
        assert extra in titles
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    datasource = load(DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml")
    uid = datasource["datasources"][0]["uid"]
    for panel in dash["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24 and pos["h"] > 0
        assert panel["datasource"]["uid"] == uid
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs))
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == uid
            assert target["expr"].count("(") == target["expr"].count(")")
            assert re.search(r"\b(aurea_\w+|cache_\w+)", target["expr"])


def test_grafana_provisioning_points_at_the_dashboards() -> None:
    provider = load(DEPLOY / "grafana" / "provisioning" / "dashboards" / "aurea.yml")
    path = provider["providers"][0]["options"]["path"]
    compose = load(ROOT / "docker-compose.yml")
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./deploy/grafana/dashboards:{path}:ro" in mounts


def test_compose_stack() -> None:
    compose = load(ROOT / "docker-compose.yml")
    services = compose["services"]
    assert set(services) == {"aurea", "redis", "prometheus", "grafana", "otel-collector"}
    ports = {s: set(v.get("ports", [])) for s, v in services.items()}
    assert {"50051:50051", "8080:8080", "9464:9464"} <= ports["aurea"]
    assert "9090:9090" in ports["prometheus"] and "3000:3000" in ports["grafana"]
    assert "6379:6379" in ports["redis"]
    assert {"4317:4317", "4318:4318"} <= ports["otel-collector"]
    env = services["grafana"]["environment"]
    assert env["GF_SECURITY_ADMIN_USER"] == "admin" and env["GF_SECURITY_ADMIN_PASSWORD"] == "admin"
    aurea_env = services["aurea"]["environment"]
    assert aurea_env["AUREA_TELEMETRY_OTLP_ENDPOINT"].startswith("http://otel-collector:")
    assert aurea_env["AUREA_REDIS_URL"].startswith("redis://redis:")
    assert services["aurea"]["build"] == "." and (ROOT / "Dockerfile").is_file()
    for name, service in services.items():
        for volume in service.get("volumes", []):
            host = volume.split(":")[0]
            assert (ROOT / host).exists(), f"{name} mounts {host}, which does not exist"
        if "image" in service and name != "aurea":
            assert ":" in service["image"] and not service["image"].endswith(":latest")
    prom = load(DEPLOY / "prometheus.yml")
    assert prom["global"]["scrape_interval"] == "5s"
    assert prom["scrape_configs"][0]["static_configs"][0]["targets"] == ["aurea:9464"]


def test_compose_config_where_docker_compose_exists() -> None:
    """``docker compose config`` validates against the Compose schema where the plugin is
    installed (not on this CI machine, which has no offline copy of it)."""
    docker = shutil.which("docker")
    if (
        docker is None
        or subprocess.run(
            [docker, "compose", "version"], capture_output=True, check=False, timeout=30
        ).returncode
    ):
        return
    done = subprocess.run(
        [docker, "compose", "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
        capture_output=True,
        text=True,
        env={"AUREA_API_KEYS": "admin:x", "PATH": "/usr/bin:/bin:/usr/local/bin"},
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def test_dockerfile_is_multistage_non_root_and_health_checked() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*", text, re.M) and "/healthz" in text
    assert re.search(r"^EXPOSE .*9464", text, re.M)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: 1\nb:\n  - x\n  - 'y z'\n", {"a": 1, "b": ["x", "y z"]}),
        ('s:\n  t: ["A", "b c"]  # note\n  u: {}\n', {"s": {"t": ["A", "b c"], "u": {}}}),
        ("l:\n  - k: v\n    m: 2\n", {"l": [{"k": "v", "m": 2}]}),
    ],
)
def test_the_subset_reader(text: str, expected: Any) -> None:
    assert read_yaml_subset(text) == expected
