"""deploy/: the server image's Dockerfile and the Kubernetes manifests agree with the server they run.

Nothing is built or applied (no registry, no cluster here): the manifests are validated against the
Kubernetes JSON schemas (kubernetes-validate, strict: unknown fields fail) for the oldest and newest
Kubernetes versions we claim, and against the server's own options.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from voxbeam.server.cli import build_parser
from voxbeam.server.metrics import METRICS_PATH

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
DOCKERFILE = ROOT / "deploy" / "server" / "Dockerfile"
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
# What `voxbeam serve` waits for after SIGTERM beyond --shutdown_grace: busy sessions' closes (10 s),
# the listener's close (5 s), the engine workers' stop (5 s). See SpeechServer.shutdown.
SHUTDOWN_OVERHEAD_S = 20


def manifests() -> dict[str, dict[str, Any]]:
    """kind -> the one document of that kind under deploy/k8s (Kustomization included)."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        assert len(docs) == 1, f"{path.name}: one document per file"
        kind = docs[0]["kind"]
        assert kind not in out, f"two {kind} manifests"
        out[kind] = docs[0] | {"__file__": path.name}
    return out


def clean(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "__file__"}


@pytest.fixture(scope="module")
def docs() -> dict[str, dict[str, Any]]:
    return manifests()


@pytest.fixture(scope="module")
def pod(docs) -> dict[str, Any]:
    return docs["Deployment"]["spec"]["template"]


@pytest.fixture(scope="module")
def container(pod) -> dict[str, Any]:
    [c] = pod["spec"]["containers"]
    return c


def server_args(argv: list[str]) -> Any:
    """Parse arguments with `voxbeam serve`'s own parser (an unknown or renamed flag fails)."""
    return build_parser().parse_args(argv)


def mib(quantity: str) -> float:
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024}
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi)", quantity)
    assert m, f"memory quantity {quantity!r} in Ki/Mi/Gi"
    return float(m.group(1)) * units[m.group(2)]


def test_every_manifest_is_valid_against_the_kubernetes_schema(docs) -> None:
    assert {"Namespace", "Deployment", "Service", "HorizontalPodAutoscaler", "Secret", "PodDisruptionBudget"} <= set(
        docs
    )
    for kind, doc in docs.items():
        if kind == "Kustomization":
            continue
        for version in KUBERNETES_VERSIONS:
            kubernetes_validate.validate(clean(doc), version, strict=True)  # raises on any error


def test_the_schema_check_can_fail(docs) -> None:
    broken = json.loads(json.dumps(clean(docs["Deployment"])))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "/healthz"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[0], strict=True)
    broken = json.loads(json.dumps(clean(docs["Service"])))
    broken["spec"]["ports"][0]["port"] = "eighty"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[0], strict=False)


def test_kustomization_applies_everything_but_the_secret_placeholder(docs) -> None:
    kustomization = docs["Kustomization"]
    files = {d["__file__"] for k, d in docs.items() if k not in ("Kustomization", "Secret")}
    assert set(kustomization["resources"]) == files
    assert docs["Secret"]["__file__"] not in kustomization["resources"]
    for kind, doc in docs.items():
        if kind not in ("Kustomization", "Namespace"):
            assert doc["metadata"]["namespace"] == kustomization["namespace"] == docs["Namespace"]["metadata"]["name"]
    [image] = kustomization["images"]
    assert image["name"] == docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]["image"].split(":")[0]


def test_probes_ports_and_service_match_the_server(docs, pod, container) -> None:
    args = server_args(container["args"])
    assert args.host == "0.0.0.0"
    [port] = container["ports"]
    assert port["containerPort"] == args.port and port["name"] == "ws"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] == "/healthz" and get["port"] in (port["name"], args.port), probe
    # The Service reaches that port on pods the Deployment labels.
    labels = pod["metadata"]["labels"]
    service = docs["Service"]["spec"]
    assert service["selector"].items() <= labels.items()
    assert docs["Deployment"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["ports"][0]["targetPort"] in (port["name"], port["containerPort"])
    assert docs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    # Prometheus finds /metrics on the same port (deploy/prometheus/scrape-config.yaml keys on these).
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == METRICS_PATH
    assert int(annotations["prometheus.io/port"]) == args.port


def test_the_key_comes_from_the_secret_and_nothing_else(docs, container) -> None:
    secret = docs["Secret"]
    [env] = [e for e in container["env"] if e["name"] == "VOXNEXUS_API_KEY"]
    ref = env["valueFrom"]["secretKeyRef"]
    assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"]
    assert secret["stringData"][ref["key"]] == "", "the committed Secret holds no key"
    assert not any(a.startswith("--api_key") or a == "--no_auth" for a in container["args"])


def test_grace_period_covers_the_servers_drain(docs, pod, container) -> None:
    args = server_args(container["args"])
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    needed = int(pre_stop[1]) + args.shutdown_grace + SHUTDOWN_OVERHEAD_S
    grace = pod["spec"]["terminationGracePeriodSeconds"]
    assert needed <= grace <= needed + 15, (needed, grace)


def test_resources_follow_the_measured_memory_and_the_workers(docs, pod, container) -> None:
    args = server_args(container["args"])
    measured = docs["Deployment"]["metadata"]["annotations"]
    idle = float(measured["voxbeam.io/measured-idle-mib"])
    per_session = float(measured["voxbeam.io/measured-mib-per-session"])
    requests, limits = container["resources"]["requests"], container["resources"]["limits"]
    need = idle + per_session * args.max_sessions
    assert mib(requests["memory"]) >= need, (requests["memory"], need)
    assert mib(requests["memory"]) <= 2 * need, "requests far above what was measured waste the nodes"
    assert mib(limits["memory"]) >= mib(requests["memory"])
    # One engine worker process per requested core (the HPA's utilisation is relative to it).
    assert float(requests["cpu"]) == args.workers
    hpa = docs["HorizontalPodAutoscaler"]["spec"]
    target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": docs["Deployment"]["metadata"]["name"]}
    assert hpa["scaleTargetRef"] == target
    [metric] = hpa["metrics"]
    assert metric["resource"]["name"] == "cpu" and 0 < metric["resource"]["target"]["averageUtilization"] <= 90
    assert 2 <= hpa["minReplicas"] <= hpa["maxReplicas"]


def test_pods_run_as_the_images_non_root_user(pod, container) -> None:
    security = pod["spec"]["securityContext"]
    user = int(re.search(r"^USER (\d+)", DOCKERFILE.read_text(), re.M).group(1))  # type: ignore[union-attr]
    assert security["runAsNonRoot"] is True and security["runAsUser"] == user != 0
    c = container["securityContext"]
    assert c["allowPrivilegeEscalation"] is False and c["capabilities"]["drop"] == ["ALL"]
    assert c["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert "/tmp" in mounts, "a read-only root needs a writable /tmp (logs of the launcher, multiprocessing)"


# ---------------------------------------------------------------------------
# Dockerfile


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def exec_form(rest: str) -> list[str]:
    value = json.loads(rest)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), rest
    return value


def test_dockerfile_runs_voxbeam_serve_as_non_root_with_a_health_check() -> None:
    ins = instructions()
    kinds = [k for k, _ in ins]
    assert kinds.count("FROM") == 2, "a build stage and a runtime stage"
    froms = [rest for k, rest in ins if k == "FROM"]
    args = dict(rest.split("=", 1) for k, rest in ins if k == "ARG" and "=" in rest)
    assert all(f.split()[0] == "${PYTHON_IMAGE}" for f in froms)
    assert re.fullmatch(r"python:3\.11-slim-\w+", args["PYTHON_IMAGE"])
    assert any(k == "RUN" and "pip install -c constraints.txt '.[server]'" in rest for k, rest in ins)
    # Only files that exist are copied, and the ignore file lets them through.
    for k, rest in ins:
        if k == "COPY" and not rest.startswith("--from"):
            for src in rest.split()[:-1]:
                assert (ROOT / src).exists(), src
    ignore = (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text().split()
    assert ignore[ignore.index("*") :].count("*") == 1 and {
        "!setup.py",
        "!README.md",
        "!constraints.txt",
        "!voxbeam/",
    } <= set(ignore)

    user = [rest for k, rest in ins if k == "USER"]
    assert user and user[-1].split(":")[0] not in ("0", "root")
    assert kinds.index("USER") < kinds.index("ENTRYPOINT")
    entrypoint = exec_form(next(rest for k, rest in ins if k == "ENTRYPOINT"))
    assert entrypoint == ["voxbeam", "serve"]
    cmd = server_args(exec_form(next(rest for k, rest in ins if k == "CMD")))
    assert cmd.host == "0.0.0.0"
    [expose] = [rest for k, rest in ins if k == "EXPOSE"]
    assert int(expose) == cmd.port
    [health] = [rest for k, rest in ins if k == "HEALTHCHECK"]
    assert f"127.0.0.1:{cmd.port}/healthz" in health and "CMD" in health
    # The models are inside: the build starts the server once (engines load) as the runtime user.
    run_after_user = [rest for k, rest in ins[kinds.index("USER") :] if k == "RUN"]
    assert any("LocalServer" in r and ".start()" in r for r in run_after_user)


def test_the_deployment_overrides_cmd_with_the_same_options(container) -> None:
    cmd = exec_form(next(rest for k, rest in instructions() if k == "CMD"))
    image = server_args(cmd)
    pod = server_args(container["args"])
    assert (image.port, image.workers, image.max_sessions, image.shutdown_grace) == (
        pod.port,
        pod.workers,
        pod.max_sessions,
        pod.shutdown_grace,
    )
    assert "command" not in container, "the image's entrypoint (voxbeam serve) stays"


def test_scrape_config_keeps_annotated_pods() -> None:
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "scrape-config.yaml").read_text())
    [job] = config["scrape_configs"]
    assert job["kubernetes_sd_configs"][0]["role"] == "pod"
    keep = job["relabel_configs"][0]
    assert keep["action"] == "keep" and keep["regex"] == "true"
    assert keep["source_labels"] == ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"]
    assert job["kubernetes_sd_configs"][0]["namespaces"]["names"] == [manifests()["Namespace"]["metadata"]["name"]]
