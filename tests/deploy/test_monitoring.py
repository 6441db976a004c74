"""The Prometheus scrape configuration and the Grafana dashboard: well-formed, and asking only for metrics and
labels that service/metrics.py really exports."""

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from service.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "imgcls-dashboard.json"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
API_DEPLOYMENT = ROOT / "deploy" / "k8s" / "base" / "api-deployment.yaml"
BASE_KUSTOMIZATION = ROOT / "deploy" / "k8s" / "base" / "kustomization.yaml"

TARGET_LABELS = {"job", "instance", "namespace", "pod", "component", "node", "deployment"}  # added by Prometheus
VARIABLES = {"$__rate_interval", "$datasource", "$job", "$model", "$drift_window"}
METRIC = re.compile(r"\bimgcls_[a-z0-9_]+")


def exported() -> dict[str, set[str]]:
    """Every series name /metrics can hold, with its labels: counters get _total, histograms _bucket (with
    le), _sum and _count (the _created series are disabled)."""
    names: dict[str, set[str]] = {}
    for metric in vars(Metrics()).values():
        if not isinstance(metric, MetricWrapperBase):
            continue
        labels = set(metric._labelnames)  # no public accessor
        for family in metric.describe():
            if family.type == "counter":
                names[f"{family.name}_total"] = labels
            elif family.type == "histogram":
                names |= {f"{family.name}_bucket": labels | {"le"}, f"{family.name}_sum": labels}
                names[f"{family.name}_count"] = labels
            else:
                names[family.name] = labels
    return names


EXPORTED = exported()
DASHBOARD_JSON: dict[str, Any] = json.loads(DASHBOARD.read_text())
PANELS = [p for p in DASHBOARD_JSON["panels"] if p["type"] != "row"]
PROMQL = [(panel["title"], target["expr"]) for panel in PANELS for target in panel["targets"]]


def by_clauses(expr: str) -> set[str]:
    return {
        label.strip() for group in re.findall(r"\b(?:by|ignoring)\s*\(([^)]*)\)", expr) for label in group.split(",")
    }


def selectors(expr: str) -> list[tuple[str, set[str]]]:
    return [
        (name, {matcher.split("=")[0].rstrip("!~").strip() for matcher in body.split(",") if matcher.strip()})
        for name, body in re.findall(r"\b(imgcls_[a-z0-9_]+)\{([^}]*)\}", expr)
    ]


# ---------------------------------------------------------------- Grafana


def test_dashboard_is_a_recent_grafana_dashboard_with_a_prometheus_datasource_variable() -> None:
    assert DASHBOARD_JSON["schemaVersion"] >= 39
    assert DASHBOARD_JSON["uid"] and DASHBOARD_JSON["title"]
    variables = {v["name"]: v for v in DASHBOARD_JSON["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for panel in PANELS:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"] and panel["description"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"], panel["title"]
    for variable in ("job", "model"):
        assert variables[variable]["datasource"]["uid"] == "${datasource}"
    used = {v for _, expr in PROMQL for v in re.findall(r"\$\w+", expr)}
    assert used <= VARIABLES and {v.lstrip("$") for v in used} - {"__rate_interval"} <= variables.keys()


def test_panels_have_unique_ids_and_do_not_overlap() -> None:
    panels = DASHBOARD_JSON["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        mine = {
            (x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & mine, f"{panel['title']} overlaps another panel"
        cells |= mine


def test_dashboard_covers_what_operators_watch() -> None:
    wanted = {
        "imgcls_request_duration_seconds_count",  # request rate by endpoint and model
        "imgcls_request_duration_seconds_bucket",  # latency quantiles
        "imgcls_batch_size_bucket",
        "imgcls_queue_duration_seconds_bucket",
        "imgcls_in_flight_requests",
        "imgcls_rejects_total",
        "imgcls_predictions_total",
        "imgcls_confidence_bucket",
        "imgcls_model_info",
        "imgcls_jobs",
        "imgcls_jobs_submitted_total",
        "imgcls_jobs_finished_total",
    }
    assert wanted <= {name for _, expr in PROMQL for name in METRIC.findall(expr)}
    quantiles = {
        q
        for _, expr in PROMQL
        if "imgcls_request_duration_seconds_bucket" in expr
        for q in re.findall(r"histogram_quantile\((0\.\d+)", expr)
    }
    assert quantiles == {"0.5", "0.95", "0.99"}
    [model_info] = [p for p in PANELS if "imgcls_model_info" in p["targets"][0]["expr"]]
    assert "provider" in by_clauses(model_info["targets"][0]["expr"])


@pytest.mark.parametrize(("title", "expr"), PROMQL, ids=[f"{t}:{e[:40]}" for t, e in PROMQL])
def test_promql_asks_only_for_exported_metrics_and_labels(title: str, expr: str) -> None:
    known = EXPORTED
    names = set(METRIC.findall(expr))
    assert names and names <= known.keys(), f"{title}: {names - known.keys()} are not in service/metrics.py"
    for name, labels in selectors(expr):
        unknown = labels - known[name] - TARGET_LABELS
        assert not unknown, f"{title}: {name} has no label {unknown}"
    available = set().union(*(known[name] for name in names)) | TARGET_LABELS
    assert by_clauses(expr) <= available, f"{title}: grouping by labels no metric here has"
    assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), title


# ---------------------------------------------------------------- Prometheus


def test_prometheus_config_scrapes_the_api_at_metrics() -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    assert set(config) <= {"global", "scrape_configs", "rule_files", "alerting"}
    for key in ("scrape_interval", "scrape_timeout"):
        assert re.fullmatch(r"\d+[smh]", config["global"][key])
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert len(jobs) == len(config["scrape_configs"]) == 2
    for job in jobs.values():
        assert job["metrics_path"] == "/metrics" and job["scheme"] == "http"
        assert set(job) <= {
            "job_name",
            "metrics_path",
            "scheme",
            "static_configs",
            "kubernetes_sd_configs",
            "relabel_configs",
            "scrape_interval",
            "scrape_timeout",
        }

    [static] = jobs["imgcls-api"]["static_configs"]
    assert static["targets"] == ["api:8000", "api-gpu:8000"]

    pods = jobs["imgcls-api-pods"]
    [discovery] = pods["kubernetes_sd_configs"]
    namespace = yaml.safe_load(BASE_KUSTOMIZATION.read_text())["namespace"]
    assert discovery == {"role": "pod", "namespaces": {"names": [namespace]}}


def relabel(rules: list[dict[str, Any]], labels: dict[str, str]) -> dict[str, str] | None:
    """Prometheus' relabelling for the actions used here (keep, drop, replace), anchored regexes."""
    labels = dict(labels)
    for rule in rules:
        value = rule.get("separator", ";").join(labels.get(name, "") for name in rule["source_labels"])
        match = re.fullmatch(rule.get("regex", "(.*)"), value)
        action = rule.get("action", "replace")
        if (action == "keep" and not match) or (action == "drop" and match):
            return None
        if action == "replace" and match:
            labels[rule["target_label"]] = match.expand(re.sub(r"\$(\d+)", r"\\\1", rule.get("replacement", "$1")))
    return labels


def test_pod_discovery_follows_the_api_pods_annotations() -> None:
    rules = yaml.safe_load(PROMETHEUS.read_text())["scrape_configs"][1]["relabel_configs"]
    template = yaml.safe_load(API_DEPLOYMENT.read_text())["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    meta = {
        f"__meta_kubernetes_pod_annotation_{re.sub(r'[^a-zA-Z0-9_]', '_', key)}": value
        for key, value in annotations.items()
    }
    pod = {
        "__address__": "10.1.2.3:8000",
        "__metrics_path__": "/metrics",
        "__meta_kubernetes_pod_phase": "Running",
        "__meta_kubernetes_namespace": "imgcls",
        "__meta_kubernetes_pod_name": "api-7d9f-abcde",
        "__meta_kubernetes_pod_label_app_kubernetes_io_component": "api",
        "__meta_kubernetes_pod_node_name": "n1",
        **meta,
    }
    target = relabel(rules, pod)
    assert target is not None
    [port] = template["spec"]["containers"][0]["ports"]
    assert target["__address__"] == f"10.1.2.3:{port['containerPort']}"
    assert target["__metrics_path__"] == "/metrics"
    assert (target["pod"], target["namespace"], target["component"]) == ("api-7d9f-abcde", "imgcls", "api")
    # Not annotated, or not running: not scraped.
    assert relabel(rules, {**pod, "__meta_kubernetes_pod_annotation_prometheus_io_scrape": "false"}) is None
    assert relabel(rules, {k: v for k, v in pod.items() if "annotation" not in k}) is None
    assert relabel(rules, {**pod, "__meta_kubernetes_pod_phase": "Pending"}) is None
