"""deploy/kubernetes: the manifests parse, hang together, and name only what the code has.

No cluster here, so the manifests are checked structurally: every document
parses; selectors match the pods' labels; the router shards are a StatefulSet
behind a headless Service with a PodDisruptionBudget and no autoscaler; the
workers' HPA scales their Deployment; every probe's path and port, every flag
and every ``MCP_TORNADO_*`` variable exists; and each container's command,
with its environment and key files, parses into the settings the deployment
means (router shard I of N, workers listing every shard in order).
"""

from __future__ import annotations

import inspect
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from mcp_tornado import cli, config, curve
from mcp_tornado.router.telemetry import RouterTelemetry
from mcp_tornado.settings import RouterSettings, WorkerSettings
from mcp_tornado.web import make_app

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "kubernetes"


def documents() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for path in sorted(DEPLOY.glob("*.yaml")):
        found += [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    return found


def one(kind: str, name: str | None = None) -> dict[str, Any]:
    (found,) = [
        d
        for d in documents()
        if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    return found


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


def container(workload: dict[str, Any]) -> dict[str, Any]:
    (found,) = workload["spec"]["template"]["spec"]["containers"]
    assert isinstance(found, dict)
    return found


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


ROUTERS = one("StatefulSet")
WORKERS = one("Deployment")


def test_every_document_parses_and_is_a_kind_we_mean() -> None:
    kinds = sorted(d["kind"] for d in documents())
    assert kinds == [
        "Deployment",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Service",
        "Service",
        "StatefulSet",
    ]


def test_selectors_match_the_labels_of_the_pods_they_mean() -> None:
    for workload in (ROUTERS, WORKERS):
        assert matches(workload["spec"]["selector"]["matchLabels"], pod_labels(workload))
    router_service = one("Service", ROUTERS["spec"]["serviceName"])
    assert router_service["spec"]["clusterIP"] == "None"  # headless: a name per shard
    assert matches(router_service["spec"]["selector"], pod_labels(ROUTERS))
    assert not matches(router_service["spec"]["selector"], pod_labels(WORKERS))
    worker_service = one("Service", "mcp-tornado")
    assert matches(worker_service["spec"]["selector"], pod_labels(WORKERS))
    assert not matches(worker_service["spec"]["selector"], pod_labels(ROUTERS))
    budget = one("PodDisruptionBudget")
    assert matches(budget["spec"]["selector"]["matchLabels"], pod_labels(ROUTERS))
    assert budget["spec"]["maxUnavailable"] == 1
    scaler = one("HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert (scaler["kind"], scaler["name"]) == ("Deployment", WORKERS["metadata"]["name"])


def test_every_port_a_service_or_probe_names_is_a_container_port() -> None:
    for workload in (ROUTERS, WORKERS):
        spec = container(workload)
        ports = {port["name"]: port["containerPort"] for port in spec["ports"]}
        for probe in ("livenessProbe", "readinessProbe"):
            action = spec[probe].get("httpGet") or spec[probe]["tcpSocket"]
            assert action["port"] in ports, (workload["metadata"]["name"], probe)
        services = [
            s
            for s in documents()
            if s["kind"] == "Service" and matches(s["spec"]["selector"], pod_labels(workload))
        ]
        for service in services:
            for port in service["spec"]["ports"]:
                assert port["targetPort"] in ports


def test_probe_paths_exist_and_liveness_never_asks_the_router() -> None:
    worker = container(WORKERS)
    assert worker["livenessProbe"]["httpGet"]["path"] == "/healthz"  # never the router's health
    assert worker["readinessProbe"]["httpGet"]["path"] == "/readyz"
    app = make_app(None, [])
    patterns = {rule.matcher.regex.pattern for rule in app.wildcard_router.rules}  # type: ignore[attr-defined]
    assert {"/healthz$", "/readyz$"} <= patterns
    router = container(ROUTERS)
    for probe in ("livenessProbe", "readinessProbe"):
        assert router[probe]["httpGet"]["path"] == "/metrics"
    assert "/metrics" in inspect.getsource(RouterTelemetry.serve)


def environment(workload: dict[str, Any], pod_index: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for variable in container(workload)["env"]:
        if "value" in variable:
            found[variable["name"]] = variable["value"]
        else:
            field = variable["valueFrom"]["fieldRef"]["fieldPath"]
            assert field == "metadata.labels['apps.kubernetes.io/pod-index']"
            found[variable["name"]] = pod_index
    return found


def test_every_variable_exists() -> None:
    for workload in (ROUTERS, WORKERS):
        names = {n for n in environment(workload, "0") if n.startswith("MCP_TORNADO_")}
        assert names and names <= config.known_env()


def settings_of(
    workload: dict[str, Any], pod_index: str, tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> object:
    """The settings the container starts with, its mounted files made from real keys in ``tmp``."""
    keys, workers = tmp / "keys", tmp / "workers"
    if not keys.exists():
        curve.create_keys(keys, "router")
        curve.create_keys(keys, "worker")
        workers.mkdir()
        shutil.copy(keys / "worker.key", workers)
    mounts = {m["mountPath"]: m["name"] for m in container(workload)["volumeMounts"]}
    where = {"keys": keys, "workers": workers, "run": tmp}
    command = container(workload)["command"]
    assert command[0] == "mcp-tornado"
    argv = []
    for arg in command[1:]:
        for mount, volume in mounts.items():
            if arg == mount or arg.startswith(mount + "/"):
                arg = str(where[volume]) + arg[len(mount) :]
        argv.append(arg)
    for name in [n for n in os.environ if n.startswith("MCP_TORNADO_")]:
        monkeypatch.delenv(name)
    for name, value in environment(workload, pod_index).items():
        monkeypatch.setenv(name, str(tmp) if name == "XDG_RUNTIME_DIR" else value)
    return cli.parse_settings(argv)  # a bad flag or value exits with status 2 here


def test_each_router_pod_is_its_shard_and_the_workers_list_every_shard_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    replicas = ROUTERS["spec"]["replicas"]
    service = ROUTERS["spec"]["serviceName"]
    (zmq_port,) = [p["containerPort"] for p in container(ROUTERS)["ports"] if p["name"] == "zmq"]
    for index in range(replicas):
        router = settings_of(ROUTERS, str(index), tmp_path, monkeypatch)
        assert isinstance(router, RouterSettings)
        assert (router.shard, router.shards) == (index, replicas)
        assert router.bind == f"tcp://0.0.0.0:{zmq_port}" and router.metrics_port
        assert router.curve_allowed_dir is not None and not router.insecure
    worker = settings_of(WORKERS, "0", tmp_path, monkeypatch)
    assert isinstance(worker, WorkerSettings)
    name = ROUTERS["metadata"]["name"]
    assert worker.link.endpoints == tuple(
        f"tcp://{name}-{i}.{service}:{zmq_port}" for i in range(replicas)
    )
    assert worker.link.curve_server_key_file and not worker.link.insecure
    (http,) = [p["containerPort"] for p in container(WORKERS)["ports"] if p["name"] == "http"]
    assert (worker.host, worker.port) == ("0.0.0.0", http)
    # The grace period covers preStop and the graceful close of every client (1001).
    spec = WORKERS["spec"]["template"]["spec"]
    pre_stop = container(WORKERS)["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert spec["terminationGracePeriodSeconds"] > pre_stop + worker.shutdown_timeout + 2


def test_the_router_shards_are_never_autoscaled() -> None:
    for scaler in (d for d in documents() if d["kind"] == "HorizontalPodAutoscaler"):
        assert scaler["spec"]["scaleTargetRef"]["kind"] != "StatefulSet"
    assert ROUTERS["spec"]["podManagementPolicy"] == "Parallel"
