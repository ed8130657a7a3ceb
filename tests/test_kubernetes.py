"""The Kubernetes manifests of docker/kubernetes/: every object valid against the Kubernetes API's own schemas
(kubernetes-validate, strict: an unknown or misspelt field fails), and the objects agree with each other and with
the bus: what the pods read exists (Secret and ConfigMap), each Service, PodDisruptionBudget and autoscaler finds
its pods, probes are on /readyz and /healthz, beat is one replica, and every variable set is a setting of the bus."""

from __future__ import annotations

import kubernetes_validate
import pytest
import yaml

from app.config import Settings
from app.config_fields import env_names
from tests.servers import REPO

MANIFESTS = REPO / "docker" / "kubernetes"
KUBERNETES_VERSION = "1.31.0"  # an API version every supported cluster serves these kinds at


def load_objects() -> list[dict]:
    objects = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        objects += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return objects


OBJECTS = load_objects()


def named(kind: str) -> dict[str, dict]:
    return {obj["metadata"]["name"]: obj for obj in OBJECTS if obj["kind"] == kind}


def pod_specs() -> dict[str, dict]:
    """Each Deployment's and Job's pod template, by the workload's name."""
    return {name: obj["spec"]["template"] for kind in ("Deployment", "Job") for name, obj in named(kind).items()}


def test_there_is_something_to_check():
    kinds = {obj["kind"] for obj in OBJECTS}
    assert {"Deployment", "Service", "Ingress", "PodDisruptionBudget", "HorizontalPodAutoscaler", "Secret",
            "ConfigMap", "Job"} <= kinds


@pytest.mark.parametrize("obj", OBJECTS, ids=lambda obj: f"{obj['kind']}/{obj['metadata']['name']}")
def test_valid_against_the_kubernetes_schemas(obj):
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_pods_read_a_secret_and_a_config_map_that_exist_and_only_settings_of_the_bus():
    secrets, config_maps = named("Secret"), named("ConfigMap")
    known = set(env_names(Settings).values())
    for name, template in pod_specs().items():
        for container in template["spec"]["containers"]:
            for source in container.get("envFrom", []):
                if "secretRef" in source:
                    assert source["secretRef"]["name"] in secrets, name
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in config_maps, name
    for obj in [*secrets.values(), *config_maps.values()]:
        keys = set(obj.get("data") or {}) | set(obj.get("stringData") or {})
        assert keys <= known, f"{obj['metadata']['name']}: not settings of the bus: {sorted(keys - known)}"


def test_selectors_find_their_pods():
    labels = {name: template["metadata"]["labels"] for name, template in pod_specs().items()}

    def selects(selector: dict) -> list[str]:
        return [name for name, pod in labels.items() if selector.items() <= pod.items()]

    for deployment in named("Deployment").values():
        assert deployment["spec"]["selector"]["matchLabels"].items() <= \
            deployment["spec"]["template"]["metadata"]["labels"].items()
    for service in named("Service").values():
        assert selects(service["spec"]["selector"]) == ["collab-bus-api"], service["metadata"]["name"]
    for budget in named("PodDisruptionBudget").values():
        assert len(selects(budget["spec"]["selector"]["matchLabels"])) == 1, budget["metadata"]["name"]
    for scaler in named("HorizontalPodAutoscaler").values():
        assert scaler["spec"]["scaleTargetRef"]["name"] in named("Deployment")
    services = named("Service")
    for ingress in named("Ingress").values():
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                ports = {port["name"] for port in services[backend["name"]]["spec"]["ports"]}
                assert backend["port"]["name"] in ports


def test_the_api_is_probed_on_readyz_and_healthz_and_migrates_nothing():
    api = named("Deployment")["collab-bus-api"]["spec"]["template"]["spec"]["containers"][0]
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert "--no-migrate" in api["args"]  # the migrate Job upgrades the schema, once
    assert named("Job")["collab-bus-migrate"]["spec"]["template"]["spec"]["containers"][0]["args"] == ["db", "upgrade"]


def test_beat_runs_once_and_never_scales():
    beat = named("Deployment")["collab-bus-beat"]
    assert beat["spec"]["replicas"] == 1 and beat["spec"]["strategy"]["type"] == "Recreate"
    scaled = {scaler["spec"]["scaleTargetRef"]["name"] for scaler in named("HorizontalPodAutoscaler").values()}
    assert "collab-bus-beat" not in scaled


def test_the_example_secrets_are_accepted_by_the_bus():
    env = {**named("ConfigMap")["collab-bus-config"]["data"], **named("Secret")["collab-bus-secrets"]["stringData"]}
    settings = Settings.from_env(env)
    assert settings.edition == "enterprise" and settings.database_url.startswith("postgresql")
