"""The Kubernetes deployment in deploy/kubernetes/ and the RabbitMQ cluster in deploy/rabbitmq/cluster/
hold together.

No cluster runs the tests, so these read the manifests, as tests/test_deploy.py reads the compose file:
every Deployment probes, limits and hardens its pod, gets its own settings and nothing more, and is
reachable, autoscaled and protected from disruption; the Secrets hold placeholders only; the RabbitMQ
definitions agree with the queue arguments the services declare (shared/bus/amqp.py).
"""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import yaml

from shared.bus.amqp import queue_arguments
from shared.bus.topology import ServiceQueues
from shared.settings import DEFAULT_PORTS, SERVICES, Settings

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
CLUSTER = DEPLOY / "rabbitmq" / "cluster"

NAMESPACE = "imi"
IMAGE = "ghcr.io/imi-platform/imi"
CONFIGMAP = "imi-config"
SECRET = "imi-secrets"
PLACEHOLDER = "REPLACE_ME"
PEM = re.compile(r"-----BEGIN [A-Z0-9 ]+-----")

# What each service takes from the Secret: all of `required`, nothing outside `allowed`.
REQUIRED_SECRETS = {
    "registry": {
        "IMI_BROKER_URL",
        "IMI_REGISTRY_DATABASE_URL",
        "IMI_SIGNING_KEY",
        "IMI_SEALING_PUBLIC_KEY",
        "IMI_SECURITY_CODE_KEY",
    },
    "exchange": {"IMI_BROKER_URL", "IMI_EXCHANGE_DATABASE_URL"},
    "notifier": {"IMI_BROKER_URL", "IMI_NOTIFIER_DATABASE_URL", "IMI_SEALING_PRIVATE_KEY"},
    "retention": {"IMI_BROKER_URL", "IMI_RETENTION_DATABASE_URL"},
}
OPTIONAL_SECRETS = {
    "registry": {"IMI_MACHINE_TRANSLATION_API_KEY"},
    "exchange": set(),
    "notifier": {"IMI_SMTP_USERNAME", "IMI_SMTP_PASSWORD"},
    "retention": set(),
}

# Kubernetes kinds that are not namespaced, among those used here.
CLUSTER_SCOPED = {"Namespace"}


def _load_documents(path: Path) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def _objects(folder: Path) -> dict[tuple[str, str], dict[str, Any]]:
    objects: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(folder.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for document in _load_documents(path):
            key = (document["kind"], document["metadata"]["name"])
            assert key not in objects, f"{key} is defined twice"
            objects[key] = document
    return objects


@pytest.fixture(scope="module")
def objects() -> dict[tuple[str, str], dict[str, Any]]:
    return _objects(KUBERNETES)


@pytest.fixture(scope="module")
def cluster_objects() -> dict[tuple[str, str], dict[str, Any]]:
    return _objects(CLUSTER)


@pytest.fixture(scope="module")
def kustomization() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    return document


@pytest.fixture(scope="module")
def cluster_kustomization() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((CLUSTER / "kustomization.yaml").read_text())
    return document


@pytest.fixture(scope="module")
def definitions() -> dict[str, Any]:
    document: dict[str, Any] = json.loads((CLUSTER / "definitions.json").read_text())
    return document


@pytest.fixture(scope="module")
def rabbitmq_users(cluster_objects: dict[tuple[str, str], dict[str, Any]]) -> dict[str, dict[str, Any]]:
    secret = _get(cluster_objects, "Secret", "imi-rabbitmq-users")
    users = json.loads(secret["stringData"]["users.json"])["users"]
    return {user["name"]: user for user in users}


@pytest.fixture(scope="module")
def rabbitmq_cluster(cluster_objects: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    clusters = [document for (kind, _), document in cluster_objects.items() if kind == "RabbitmqCluster"]
    assert len(clusters) == 1, "deploy/rabbitmq/cluster/ must define exactly one RabbitmqCluster"
    return clusters[0]


def _get(objects: dict[tuple[str, str], dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    assert (kind, name) in objects, f"no {kind} {name!r}"
    return objects[(kind, name)]


def _deployment(objects: dict[tuple[str, str], dict[str, Any]], service: str) -> dict[str, Any]:
    return _get(objects, "Deployment", f"imi-{service}")


def _pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def _container(workload: dict[str, Any]) -> dict[str, Any]:
    containers = _pod_spec(workload)["containers"]
    assert len(containers) == 1, "one container per pod: the service"
    container: dict[str, Any] = containers[0]
    return container


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in container.get("env") or []}


def _secret_refs(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Environment variables read from a Secret, by variable name: their secretKeyRef."""
    refs = {}
    for name, entry in _env(container).items():
        ref = (entry.get("valueFrom") or {}).get("secretKeyRef")
        if ref is not None:
            refs[name] = ref
    return refs


def _container_port(container: dict[str, Any], port: int | str) -> int:
    """A probe's or Service's port (number or name) as the container port number it reaches."""
    ports = container.get("ports") or []
    if isinstance(port, str) and not port.isdigit():
        named = [entry["containerPort"] for entry in ports if entry.get("name") == port]
        assert named, f"the container has no port named {port!r}"
        return int(named[0])
    return int(port)


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def _pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


def _image(container: dict[str, Any]) -> tuple[str, str]:
    repository, _, tag = container["image"].rpartition(":")
    return repository, tag


_CPU = re.compile(r"^(\d+(?:\.\d+)?)(m?)$")
_MEMORY = re.compile(r"^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$")
_MEMORY_UNITS = {None: 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
_MEMORY_UNITS |= {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def _quantity(resource: str, value: object) -> float:
    text = str(value)
    if resource == "cpu":
        cpu = _CPU.match(text)
        assert cpu, f"not a CPU quantity: {text!r}"
        return float(cpu.group(1)) / (1000 if cpu.group(2) else 1)
    memory = _MEMORY.match(text)
    assert memory, f"not a memory quantity: {text!r}"
    return float(memory.group(1)) * _MEMORY_UNITS[memory.group(2)]


def _assert_requests_and_limits(container: dict[str, Any]) -> None:
    resources = container.get("resources") or {}
    for resource in ("cpu", "memory"):
        request = (resources.get("requests") or {}).get(resource)
        limit = (resources.get("limits") or {}).get(resource)
        assert request is not None and limit is not None, f"{resource}: requests and limits must both be set"
        assert 0 < _quantity(resource, request) <= _quantity(resource, limit), f"{resource}: {request} > {limit}"


def _assert_hardened(workload: dict[str, Any]) -> None:
    """Non-root, read-only root file system, no privilege escalation, no capabilities."""
    pod = _pod_spec(workload).get("securityContext") or {}
    container = _container(workload).get("securityContext") or {}
    assert container.get("runAsNonRoot", pod.get("runAsNonRoot")) is True
    assert container.get("runAsUser", pod.get("runAsUser", 10001)) != 0
    assert container.get("allowPrivilegeEscalation") is False
    assert container.get("readOnlyRootFilesystem") is True
    assert container.get("privileged", False) is False
    capabilities = container.get("capabilities") or {}
    assert "ALL" in (capabilities.get("drop") or [])
    assert not capabilities.get("add")


def _configmap_data(objects: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    data: dict[str, Any] = _get(objects, "ConfigMap", CONFIGMAP).get("data") or {}
    return data


def _secret_data(objects: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    data: dict[str, Any] = _get(objects, "Secret", SECRET).get("stringData") or {}
    return data


def _service_queues(objects: dict[tuple[str, str], dict[str, Any]], service: str) -> ServiceQueues:
    """The names the services use with this configuration (the ConfigMap's, else the defaults)."""
    data = _configmap_data(objects)
    namespace = data.get("IMI_BUS_NAMESPACE", Settings.model_fields["bus_namespace"].default)
    if "IMI_BUS_RETRY_DELAYS" in data:
        delays = [float(delay) for delay in json.loads(data["IMI_BUS_RETRY_DELAYS"])]
    else:
        factory = Settings.model_fields["bus_retry_delays"].default_factory
        assert factory is not None
        delays = factory()  # type: ignore[call-arg]
    return ServiceQueues(namespace, service, tuple(delays))


def _declared_queues(objects: dict[tuple[str, str], dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every queue the services declare, with the arguments they declare it with."""
    declared = {}
    for service in SERVICES:
        for spec in _service_queues(objects, service).consumer_topology(set()).queues:
            declared[spec.name] = queue_arguments(spec)
    return declared


def _effective_policy(definitions: dict[str, Any], queue: str, arguments: dict[str, Any]) -> dict[str, Any] | None:
    """The one policy RabbitMQ applies to a queue in vhost "/": the highest priority match."""
    kinds = {"all", "queues", f"{arguments.get('x-queue-type', 'classic')}_queues"}
    matching = [
        policy
        for policy in definitions.get("policies") or []
        if policy["vhost"] == "/" and policy.get("apply-to", "all") in kinds and re.search(policy["pattern"], queue)
    ]
    return max(matching, key=lambda policy: policy.get("priority", 0), default=None)


def _rabbitmq_config(rabbitmq_cluster: dict[str, Any]) -> dict[str, str]:
    """The cluster's additional rabbitmq.conf as key = value pairs, comments left out."""
    config = {}
    for line in rabbitmq_cluster["spec"]["rabbitmq"]["additionalConfig"].splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            config[key.strip()] = value.strip()
    return config


def _permits(pattern: str, name: str) -> bool:
    return re.search(pattern, name) is not None


# -- the kustomization ------------------------------------------------------------------------------


def test_kustomization_lists_every_manifest_and_sets_the_namespace_and_image(
    kustomization: dict[str, Any], objects: dict[tuple[str, str], dict[str, Any]]
) -> None:
    files = {path.name for path in KUBERNETES.iterdir() if path.is_file()} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(files)
    assert kustomization["namespace"] == NAMESPACE
    assert ("Namespace", NAMESPACE) in objects
    images = {image["name"]: image for image in kustomization.get("images") or []}
    assert IMAGE in images, "the image tag must be set in one place, the kustomization's images"


def test_every_object_is_in_the_platform_namespace(objects: dict[tuple[str, str], dict[str, Any]]) -> None:
    misplaced = [
        f"{kind}/{name}"
        for (kind, name), document in objects.items()
        if kind not in CLUSTER_SCOPED and document["metadata"].get("namespace") != NAMESPACE
    ]
    assert not misplaced


# -- the Deployments ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SERVICES)
def test_deployment_serves_its_service_from_the_project_image(
    objects: dict[tuple[str, str], dict[str, Any]], kustomization: dict[str, Any], name: str
) -> None:
    container = _container(_deployment(objects, name))
    assert container["args"] == ["serve", name]
    assert "command" not in container, "the image's entry point is `imi`; the arguments choose the service"
    repository, tag = _image(container)
    assert repository == IMAGE
    (image,) = [image for image in kustomization["images"] if image["name"] == IMAGE]
    assert tag == image["newTag"]


@pytest.mark.parametrize("name", SERVICES)
def test_deployment_listens_on_its_port_on_every_interface(
    objects: dict[tuple[str, str], dict[str, Any]], name: str
) -> None:
    container = _container(_deployment(objects, name))
    environment = _env(container)
    assert environment["IMI_HTTP_HOST"].get("value") == "0.0.0.0"
    assert environment["IMI_HTTP_PORT"].get("value") == str(DEFAULT_PORTS[name])
    assert [port["containerPort"] for port in container["ports"]] == [DEFAULT_PORTS[name]]


@pytest.mark.parametrize("name", SERVICES)
def test_deployment_probes_liveness_readiness_and_startup_on_its_port(
    objects: dict[tuple[str, str], dict[str, Any]], name: str
) -> None:
    container = _container(_deployment(objects, name))
    expected = {"startupProbe": "/health/live", "livenessProbe": "/health/live", "readinessProbe": "/health/ready"}
    for probe_name, path in expected.items():
        probe = container.get(probe_name)
        assert probe, f"{name}: no {probe_name}"
        check = probe["httpGet"]
        assert check["path"] == path, f"{name}: {probe_name} asks {check['path']}"
        assert _container_port(container, check["port"]) == DEFAULT_PORTS[name]
        assert check.get("scheme", "HTTP") == "HTTP"
    # The readiness check may wait 3 s for the database before it answers 503.
    assert container["readinessProbe"].get("timeoutSeconds", 1) > 3
    # The startup probe must leave time to start: at least 30 s before the pod is restarted.
    startup = container["startupProbe"]
    assert startup.get("periodSeconds", 10) * startup.get("failureThreshold", 3) >= 30


@pytest.mark.parametrize("name", SERVICES)
def test_deployment_requests_and_limits_cpu_and_memory(
    objects: dict[tuple[str, str], dict[str, Any]], name: str
) -> None:
    _assert_requests_and_limits(_container(_deployment(objects, name)))


@pytest.mark.parametrize("name", SERVICES)
def test_deployment_runs_as_non_root_without_privileges(
    objects: dict[tuple[str, str], dict[str, Any]], name: str
) -> None:
    _assert_hardened(_deployment(objects, name))


@pytest.mark.parametrize("name", SERVICES)
def test_deployment_reads_the_shared_configmap(objects: dict[tuple[str, str], dict[str, Any]], name: str) -> None:
    container = _container(_deployment(objects, name))
    sources = container.get("envFrom") or []
    assert {"configMapRef": {"name": CONFIGMAP}} in sources
    _get(objects, "ConfigMap", CONFIGMAP)
    # envFrom on the Secret would hand every key, every database and every private key, to every pod.
    assert not [source for source in sources if "secretRef" in source]


@pytest.mark.parametrize("name", SERVICES)
def test_deployment_gets_its_own_database_url_from_the_secret_and_no_other(
    objects: dict[tuple[str, str], dict[str, Any]], name: str
) -> None:
    container = _container(_deployment(objects, name))
    refs = _secret_refs(container)
    own = f"IMI_{name.upper()}_DATABASE_URL"
    assert refs.get(own) == {"name": SECRET, "key": own}
    assert own in _secret_data(objects)
    others = {f"IMI_{other.upper()}_DATABASE_URL" for other in SERVICES if other != name}
    assert not others & set(_env(container)), "another service's database URL as a variable"
    assert not others & {ref["key"] for ref in refs.values()}, "another service's database URL from the Secret"


@pytest.mark.parametrize("name", SERVICES)
def test_deployment_takes_only_the_secrets_its_service_needs(
    objects: dict[tuple[str, str], dict[str, Any]], name: str
) -> None:
    refs = _secret_refs(_container(_deployment(objects, name)))
    secret = _secret_data(objects)
    for variable, ref in refs.items():
        assert ref["name"] == SECRET
        assert ref["key"] == variable, f"{variable} is read from the Secret's {ref['key']}"
        assert ref["key"] in secret or ref.get("optional") is True, f"the Secret has no {ref['key']}"
    assert REQUIRED_SECRETS[name] <= set(refs), f"missing: {REQUIRED_SECRETS[name] - set(refs)}"
    extra = set(refs) - REQUIRED_SECRETS[name] - OPTIONAL_SECRETS[name]
    assert not extra, f"{name} needs none of {extra}"


@pytest.mark.parametrize("name", SERVICES)
def test_deployment_is_scraped_for_metrics(objects: dict[tuple[str, str], dict[str, Any]], name: str) -> None:
    deployment = _deployment(objects, name)
    annotations = deployment["spec"]["template"]["metadata"].get("annotations") or {}
    assert annotations.get("prometheus.io/scrape") == "true"
    assert annotations.get("prometheus.io/path") == "/metrics"
    assert annotations.get("prometheus.io/port") == str(DEFAULT_PORTS[name])


@pytest.mark.parametrize("name", SERVICES)
def test_deployment_selects_its_own_pods_only(objects: dict[tuple[str, str], dict[str, Any]], name: str) -> None:
    deployment = _deployment(objects, name)
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert _matches(selector, _pod_labels(deployment))
    for other in SERVICES:
        if other != name:
            assert not _matches(selector, _pod_labels(_deployment(objects, other))), f"{name} selects {other}'s pods"


@pytest.mark.parametrize("name", SERVICES)
def test_service_routes_to_the_deployment_port(objects: dict[tuple[str, str], dict[str, Any]], name: str) -> None:
    deployment = _deployment(objects, name)
    service = _get(objects, "Service", f"imi-{name}")
    selector = service["spec"]["selector"]
    assert _matches(selector, _pod_labels(deployment))
    for other in SERVICES:
        if other != name:
            assert not _matches(selector, _pod_labels(_deployment(objects, other))), f"{name} routes to {other}"
    container = _container(deployment)
    ports = {int(port["port"]): port for port in service["spec"]["ports"]}
    assert DEFAULT_PORTS[name] in ports
    target = ports[DEFAULT_PORTS[name]].get("targetPort", DEFAULT_PORTS[name])
    assert _container_port(container, target) == DEFAULT_PORTS[name]


@pytest.mark.parametrize("name", SERVICES)
def test_autoscaler_scales_the_deployment_on_cpu(objects: dict[tuple[str, str], dict[str, Any]], name: str) -> None:
    deployment = _deployment(objects, name)
    autoscalers = [
        document
        for (kind, _), document in objects.items()
        if kind == "HorizontalPodAutoscaler"
        and document["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": f"imi-{name}"}
    ]
    assert len(autoscalers) == 1, f"{name}: expected one autoscaler for its Deployment"
    (autoscaler,) = autoscalers
    assert autoscaler["apiVersion"] == "autoscaling/v2"
    spec = autoscaler["spec"]
    assert 2 <= spec["minReplicas"] <= spec["maxReplicas"]
    cpu = [
        metric["resource"]["target"]
        for metric in spec["metrics"]
        if metric["type"] == "Resource" and metric["resource"]["name"] == "cpu"
    ]
    assert cpu and cpu[0]["type"] == "Utilization" and 0 < cpu[0]["averageUtilization"] <= 100
    # A replica count in the Deployment would reset the autoscaler's at every apply.
    assert "replicas" not in deployment["spec"]


@pytest.mark.parametrize("name", SERVICES)
def test_disruption_budget_covers_the_deployment_pods(
    objects: dict[tuple[str, str], dict[str, Any]], name: str
) -> None:
    budgets = [
        document
        for (kind, _), document in objects.items()
        if kind == "PodDisruptionBudget"
        and _matches(document["spec"]["selector"]["matchLabels"], _pod_labels(_deployment(objects, name)))
    ]
    assert len(budgets) == 1, f"{name}: expected one PodDisruptionBudget over its pods"
    (budget,) = budgets
    assert budget["apiVersion"] == "policy/v1"
    spec = budget["spec"]
    assert ("maxUnavailable" in spec) != ("minAvailable" in spec)
    assert spec.get("maxUnavailable", 1) != 0, "maxUnavailable 0 would block every node drain"


# -- configuration and secrets ----------------------------------------------------------------------


def test_configmap_holds_valid_production_settings(objects: dict[tuple[str, str], dict[str, Any]]) -> None:
    data = _configmap_data(objects)
    assert data["IMI_ENVIRONMENT"] == "production"
    assert data["IMI_LOG_FORMAT"] == "json"
    assert all(isinstance(value, str) for value in data.values()), "ConfigMap values must be strings"
    # Every key is a setting the services read: a misspelt one would silently do nothing.
    fields = {f"IMI_{field.upper()}" for field in Settings.model_fields}
    if any(key.startswith("IMI_NOTIFIER_") for key in data):
        from services.notifier.settings import NotifierSettings

        fields |= {f"IMI_NOTIFIER_{field.upper()}" for field in NotifierSettings.model_fields}
    assert not set(data) - fields, f"not settings: {set(data) - fields}"
    # Together with the Secret's values, production settings load (types, durations, SMTP with TLS).
    values = {key.removeprefix("IMI_").lower(): value for key, value in data.items()}
    values["broker_url"] = _secret_data(objects)["IMI_BROKER_URL"]
    values["smtp_username"] = "someone"
    settings = Settings(**values)
    assert settings.environment.value == "production"


def test_configmap_holds_no_secret(objects: dict[tuple[str, str], dict[str, Any]]) -> None:
    data = _configmap_data(objects)
    assert not set(data) & set(_secret_data(objects)), "a secret setting in the ConfigMap"
    credentials_in_url = re.compile(r"://[^/@\s]*:[^/@\s]*@")
    assert not [key for key, value in data.items() if credentials_in_url.search(str(value))]
    assert not [key for key, value in data.items() if PEM.search(str(value)) and "PRIVATE" in str(value)]


def test_registry_url_points_at_the_registry_service(objects: dict[tuple[str, str], dict[str, Any]]) -> None:
    url = urlsplit(_configmap_data(objects)["IMI_REGISTRY_URL"])
    service = _get(objects, "Service", url.hostname or "")
    assert service["spec"]["selector"] == _deployment(objects, "registry")["spec"]["selector"]["matchLabels"]
    assert url.port in {int(port["port"]) for port in service["spec"]["ports"]}


@pytest.mark.parametrize(
    ("folder", "kind", "name"),
    [(KUBERNETES, "Secret", SECRET), (CLUSTER, "Secret", "imi-rabbitmq-users")],
)
def test_secret_holds_only_placeholders(folder: Path, kind: str, name: str) -> None:
    secret = _get(_objects(folder), kind, name)
    # Plain text in stringData, so a placeholder cannot hide in base64.
    assert "data" not in secret
    values = secret["stringData"]
    assert values
    for key, value in values.items():
        assert PLACEHOLDER in value, f"{name}: {key} is not a placeholder"
        assert not PEM.search(value), f"{name}: {key} holds a PEM block"
    if name == "imi-rabbitmq-users":
        for user in json.loads(values["users.json"])["users"]:
            assert user.get("password") == PLACEHOLDER and "password_hash" not in user, user["name"]
    else:
        # Every key is a placeholder and nothing more, except inside a URL's credentials or host.
        for key, value in values.items():
            assert value == PLACEHOLDER or "://" in value, f"{name}: {key} carries a real value"
            if "://" in value:
                assert unquote(urlsplit(value).password or "") == PLACEHOLDER, f"{name}: {key} has a password"


def test_broker_url_reaches_the_rabbitmq_cluster_as_its_application_user(
    objects: dict[tuple[str, str], dict[str, Any]],
    rabbitmq_cluster: dict[str, Any],
    rabbitmq_users: dict[str, dict[str, Any]],
) -> None:
    url = urlsplit(_secret_data(objects)["IMI_BROKER_URL"])
    assert url.scheme == "amqp"
    # The operator's client Service is named after the cluster.
    assert url.hostname == rabbitmq_cluster["metadata"]["name"]
    assert url.port == 5672
    assert unquote(url.path.removeprefix("/") or "/") == "/"
    assert url.username in rabbitmq_users
    assert "administrator" not in rabbitmq_users[url.username]["tags"], "the services need no administrator"


# -- the migration Job ------------------------------------------------------------------------------


def test_migration_job_migrates_every_database_once(
    objects: dict[tuple[str, str], dict[str, Any]], kustomization: dict[str, Any]
) -> None:
    jobs = [document for (kind, _), document in objects.items() if kind == "Job"]
    assert len(jobs) == 1
    (job,) = jobs
    container = _container(job)
    assert container["args"] == ["migrate"]
    assert "command" not in container
    assert _pod_spec(job)["restartPolicy"] == "OnFailure"
    assert isinstance(job["spec"].get("backoffLimit"), int) and 1 <= job["spec"]["backoffLimit"] <= 10
    assert _image(container) == _image(_container(_deployment(objects, "registry")))
    assert {"configMapRef": {"name": CONFIGMAP}} in (container.get("envFrom") or [])
    refs = _secret_refs(container)
    for name in SERVICES:
        variable = f"IMI_{name.upper()}_DATABASE_URL"
        assert refs.get(variable) == {"name": SECRET, "key": variable}
    # Production settings do not load without a broker URL.
    assert refs.get("IMI_BROKER_URL") == {"name": SECRET, "key": "IMI_BROKER_URL"}
    _assert_requests_and_limits(container)
    _assert_hardened(job)
    # Applied on its own before each rollout (docs/operations.md): `kubectl apply -l` picks it out.
    labels = job["metadata"]["labels"]
    others = [document for document in objects.values() if document is not job]
    assert not [document for document in others if _matches(labels, document["metadata"].get("labels") or {})]


# -- the RabbitMQ cluster ---------------------------------------------------------------------------


def test_cluster_kustomization_lists_every_file(cluster_kustomization: dict[str, Any]) -> None:
    files = {path.name for path in CLUSTER.iterdir() if path.is_file()} - {"kustomization.yaml"}
    generated = {
        file.rpartition("=")[2]
        for generator in cluster_kustomization.get("configMapGenerator") or []
        for file in generator.get("files") or []
    }
    assert sorted([*cluster_kustomization["resources"], *generated]) == sorted(files)
    assert cluster_kustomization["namespace"] == NAMESPACE


def test_rabbitmq_cluster_runs_three_nodes_with_resources_and_storage(rabbitmq_cluster: dict[str, Any]) -> None:
    assert rabbitmq_cluster["apiVersion"] == "rabbitmq.com/v1beta1"
    spec = rabbitmq_cluster["spec"]
    assert spec["replicas"] == 3
    resources = spec["resources"]
    for resource in ("cpu", "memory"):
        assert (
            0
            < _quantity(resource, resources["requests"][resource])
            <= _quantity(resource, resources["limits"][resource])
        )
    assert _quantity("memory", spec["persistence"]["storage"]) > 0


def test_rabbitmq_pauses_a_minority_and_defaults_to_quorum_queues(rabbitmq_cluster: dict[str, Any]) -> None:
    config = _rabbitmq_config(rabbitmq_cluster)
    assert config.get("cluster_partition_handling") == "pause_minority"
    assert config.get("default_queue_type") == "quorum"


def test_rabbitmq_imports_the_users_then_the_definitions_at_boot(
    rabbitmq_cluster: dict[str, Any], cluster_kustomization: dict[str, Any]
) -> None:
    directory = PurePosixPath(_rabbitmq_config(rabbitmq_cluster)["load_definitions"])
    pod = rabbitmq_cluster["spec"]["override"]["statefulSet"]["spec"]["template"]["spec"]
    (container,) = [container for container in pod["containers"] if container["name"] == "rabbitmq"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounted = {}
    for mount in container["volumeMounts"]:
        path = PurePosixPath(mount["mountPath"])
        if path.parent == directory:
            assert path.suffix == ".json", "RabbitMQ imports the .json files of the directory"
            mounted[path.name] = (volumes[mount["name"]], mount.get("subPath"))
    (generated,) = [
        generator
        for generator in cluster_kustomization["configMapGenerator"]
        if "definitions.json" in generator["files"]
    ]
    assert generated["options"]["disableNameSuffixHash"] is True, "the cluster refers to it by its plain name"
    topology = [
        name for name, (volume, key) in mounted.items() if volume.get("configMap") == {"name": generated["name"]}
    ]
    users = [
        name
        for name, (volume, key) in mounted.items()
        if (volume.get("secret") or {}).get("secretName") == "imi-rabbitmq-users" and key == "users.json"
    ]
    assert len(topology) == 1 and len(users) == 1
    assert mounted[topology[0]][1] == "definitions.json"
    # Files are imported in name order; the permissions in definitions.json name the users.
    assert users[0] < topology[0]


def test_rabbitmq_nodes_have_a_disruption_budget(
    cluster_objects: dict[tuple[str, str], dict[str, Any]], rabbitmq_cluster: dict[str, Any]
) -> None:
    budgets = [document for (kind, _), document in cluster_objects.items() if kind == "PodDisruptionBudget"]
    # The operator labels the nodes' pods with the cluster's name.
    pods = {"app.kubernetes.io/name": rabbitmq_cluster["metadata"]["name"]}
    assert [
        budget["spec"].get("maxUnavailable")
        for budget in budgets
        if _matches(budget["spec"]["selector"]["matchLabels"], pods)
    ] == [1]


def test_definitions_declare_the_durable_imi_events_topic_exchange(
    definitions: dict[str, Any], objects: dict[tuple[str, str], dict[str, Any]]
) -> None:
    assert {"name": "/"} in definitions["vhosts"]
    exchanges = {(exchange["vhost"], exchange["name"]): exchange for exchange in definitions["exchanges"]}
    events = exchanges[("/", _service_queues(objects, "registry").events_exchange)]
    assert events["type"] == "topic"
    assert events["durable"] is True
    assert events["auto_delete"] is False
    assert events.get("internal", False) is False


def test_policies_agree_with_the_queue_arguments_the_services_declare(
    definitions: dict[str, Any], objects: dict[tuple[str, str], dict[str, Any]]
) -> None:
    # A queue argument wins over a policy, so a policy that says otherwise would be silently ignored
    # on these queues, or take effect on queues declared without it: the two must never disagree.
    declared = _declared_queues(objects)
    assert len(declared) == len(SERVICES) * (2 + len(_service_queues(objects, "registry").retry_delays))
    conflicts = []
    for queue, arguments in declared.items():
        policy = _effective_policy(definitions, queue, arguments)
        if policy is None:
            continue
        for key, value in (policy.get("definition") or {}).items():
            argument = f"x-{key}"
            if argument in arguments and arguments[argument] != value:
                declared_value = arguments[argument]
                conflicts.append(
                    f"{queue}: policy {policy['name']!r} sets {key}={value!r}, declared {declared_value!r}"
                )
            # The queue type cannot come from a policy; the services declare it.
            if key == "queue-type":
                conflicts.append(f"{queue}: policy {policy['name']!r} sets the queue type")
    assert not conflicts


@pytest.mark.parametrize("name", SERVICES)
def test_main_queue_has_a_delivery_limit_as_last_resort(
    definitions: dict[str, Any], objects: dict[tuple[str, str], dict[str, Any]], name: str
) -> None:
    queues = _service_queues(objects, name)
    policy = _effective_policy(definitions, queues.queue, _declared_queues(objects)[queues.queue])
    assert policy, f"no policy applies to {queues.queue}"
    limit = policy["definition"].get("delivery-limit")
    # Above the services' own attempts: normally their retries and dead-lettering decide, not this.
    assert isinstance(limit, int) and limit > queues.max_attempts


@pytest.mark.parametrize("name", SERVICES)
def test_dead_letter_and_retry_queues_never_lose_a_message_to_a_policy(
    definitions: dict[str, Any], objects: dict[tuple[str, str], dict[str, Any]], name: str
) -> None:
    queues = _service_queues(objects, name)
    declared = _declared_queues(objects)
    dead_letters = _effective_policy(definitions, queues.dead_letter_queue, declared[queues.dead_letter_queue])
    settings = (dead_letters or {}).get("definition") or {}
    assert not {"message-ttl", "expires", "max-length", "max-length-bytes"} & set(settings)
    assert settings.get("overflow", "reject-publish") != "drop-head"
    # Browsing (`imi dlq list`) hands messages back to the queue: a delivery limit would drop them in
    # the end. Only "no limit" (-1, which RabbitMQ 4.x needs against its default of 20) is allowed.
    assert settings.get("delivery-limit", -1) == -1
    for attempt in range(1, len(queues.retry_delays) + 1):
        retry = queues.retry_queue(attempt)
        policy = _effective_policy(definitions, retry, declared[retry])
        assert not {"expires", "max-length", "max-length-bytes"} & set((policy or {}).get("definition") or {})


def test_rabbitmq_users_have_exactly_the_permissions_they_need(
    definitions: dict[str, Any],
    rabbitmq_users: dict[str, dict[str, Any]],
    objects: dict[tuple[str, str], dict[str, Any]],
) -> None:
    permissions = {(permission["user"], permission["vhost"]): permission for permission in definitions["permissions"]}
    assert {user for user, _ in permissions} == set(rabbitmq_users)
    application = urlsplit(_secret_data(objects)["IMI_BROKER_URL"]).username
    granted = permissions[(application, "/")]
    queue_names = list(_declared_queues(objects))
    exchange = _service_queues(objects, "registry").events_exchange
    # Declaring the exchange and the queues; binding (write on the queue, read on the exchange);
    # publishing events and, through the default exchange, retries and dead letters; consuming.
    for name in [exchange, *queue_names]:
        assert _permits(granted["configure"], name), f"cannot declare {name}"
        assert _permits(granted["read"], name), f"cannot read {name}"
        assert _permits(granted["write"], name), f"cannot write {name}"
    assert _permits(granted["write"], "amq.default"), "cannot publish retries and dead letters"
    # Nothing outside the platform's names.
    for name in ("amq.topic", "other.queue", "xyz.imi.events"):
        assert not _permits(granted["configure"], name), f"may declare {name}"
    admins = [user for user, spec in rabbitmq_users.items() if "administrator" in spec.get("tags", [])]
    assert admins and application not in admins
