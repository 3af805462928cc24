"""``deploy/``: Kubernetes manifests valid and consistent with the sidecar they run.

Schemas come from the ``kubernetes-validate`` package (no network): every
document is checked strictly (unknown fields refused) against the oldest
Kubernetes with native sidecars and the newest the package knows. Then the
pod is checked against the code: connector names, required settings, sockets
the actor's ``VFS_STATE_MOUNTS`` resolves to, probe commands that really work
(run against a real sidecar), and a grace period that covers gunicorn's.
"""
from __future__ import annotations

import copy
import glob
import os
import shlex
import subprocess
import sys

import kubernetes_validate
import pytest
import yaml

from sidecars import gunicorn_conf
from sidecars.connectors import CONNECTORS
from tests.harness.sidecar import Sidecar
from vfs_state.mounts import mounts_from_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MANIFESTS = sorted(glob.glob(os.path.join(ROOT, "deploy", "kubernetes", "*.yaml")))
NATIVE_SIDECARS = "1.29.0"  # restartPolicy: Always on init containers (beta, on by default)
VERSIONS = (NATIVE_SIDECARS, kubernetes_validate.latest_version())
SHUTDOWN_MARGIN = 5


def documents() -> list[dict]:
    docs = []
    for path in MANIFESTS:
        with open(path) as f:
            docs.extend(d for d in yaml.safe_load_all(f) if d)
    return docs


def by_kind(kind: str) -> list[dict]:
    return [d for d in documents() if d["kind"] == kind]


def pod_spec() -> dict:
    (deployment,) = by_kind("Deployment")
    return deployment["spec"]["template"]["spec"]


def sidecars() -> list[dict]:
    return [c for c in pod_spec()["initContainers"] if c.get("restartPolicy") == "Always"]


def env_of(container: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def test_manifests_exist_and_name_every_kind_used():
    assert MANIFESTS
    assert {d["kind"] for d in documents()} == {"Deployment", "ConfigMap", "Secret",
                                                 "ServiceAccount"}


@pytest.mark.parametrize("version", VERSIONS)
def test_every_document_validates_strictly(version):
    for doc in documents():
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_validation_can_fail():
    broken = copy.deepcopy(by_kind("Deployment")[0])
    broken["spec"]["template"]["spec"]["initContainers"][0]["restartPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)
    broken = copy.deepcopy(by_kind("Deployment")[0])
    broken["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = "45s"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)


def test_one_native_sidecar_per_mount_on_a_shared_socket_volume():
    spec = pod_spec()
    socket_volumes = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
    (actor,) = spec["containers"]
    env = env_of(actor)
    mounts = mounts_from_env(env)  # names; their sockets lie in VFS_STATE_SOCKET_DIR
    socket_dir = env["VFS_STATE_SOCKET_DIR"]
    expected = {m.name: os.path.join(socket_dir, f"{m.name}.sock") for m in mounts}
    served = {}
    for container in sidecars():
        socket_path = env_of(container)["CONNECTOR_SOCKET"]
        assert container["args"][0] in CONNECTORS
        (volume,) = [v for v in container["volumeMounts"]
                     if os.path.dirname(socket_path) == v["mountPath"]]
        assert volume["name"] in socket_volumes
        served[os.path.basename(socket_path)[:-len(".sock")]] = socket_path
    assert served == expected
    assert any(v["mountPath"] == socket_dir and v["name"] in socket_volumes
               for v in actor["volumeMounts"])
    assert spec["securityContext"]["fsGroup"]  # sockets are 0660: the group must be shared
    assert not any("VFS_STATE_MOUNTS" in env_of(c) for c in sidecars())  # never shim a sidecar


def test_every_required_setting_reaches_its_sidecar():
    config = {(d["kind"], d["metadata"]["name"]): set(d.get("data", {})) |
              set(d.get("stringData", {})) for d in by_kind("ConfigMap") + by_kind("Secret")}
    for container in sidecars():
        names = set(env_of(container))
        for source in container.get("envFrom", []):
            for kind, ref in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                if ref in source:
                    names |= config[(kind, source[ref]["name"])]
        for required in CONNECTORS[container["args"][0]].required_env:
            assert required in names, (container["name"], required)


def test_grace_period_covers_gunicorns_graceful_timeout():
    graceful = gunicorn_conf.graceful_timeout
    for container in sidecars():
        args = shlex.split(env_of(container).get("GUNICORN_CMD_ARGS", ""))
        if "--graceful-timeout" in args:
            graceful = max(graceful, int(args[args.index("--graceful-timeout") + 1]))
    assert pod_spec()["terminationGracePeriodSeconds"] >= graceful + SHUTDOWN_MARGIN


def test_each_sidecar_declares_its_own_metrics_port_and_directory():
    ports, dirs = set(), set()
    for container in sidecars():
        env = env_of(container)
        port = int(env["VFS_STATE_METRICS_PORT"])
        assert port in [p["containerPort"] for p in container.get("ports", [])]
        ports.add(port)
        dirs.add(env["PROMETHEUS_MULTIPROC_DIR"])
    assert len(ports) == len(dirs) == len(sidecars())  # /tmp is shared by the sidecars


def test_probes_are_vfs_state_health_and_work_against_a_real_sidecar(tmp_path):
    with Sidecar("local-buffered-cas", {"STATE_ROOT": str(tmp_path)}, workers=1) as sidecar:
        for container in sidecars():
            socket_path = env_of(container)["CONNECTOR_SOCKET"]
            for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                command = container[kind]["exec"]["command"]
                assert command[:2] == ["vfs-state", "health"] and socket_path in command
                assert ("--live" in command) == (kind == "livenessProbe")
                local = [sidecar.socket_path if a == socket_path else a for a in command[2:]]
                assert _probe(local) == 0, (container["name"], kind)
                assert _probe([str(tmp_path / "gone.sock") if a == sidecar.socket_path
                               else a for a in local]) == 1


def _probe(args: list[str]) -> int:
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("VFS_STATE_MOUNTS", None)
    return subprocess.run([sys.executable, "-m", "vfs_state.cli", "health", *args], env=env,
                          capture_output=True, timeout=60, check=False).returncode


def test_dockerfile_runs_the_sidecar_as_the_pods_user():
    with open(os.path.join(ROOT, "deploy", "Dockerfile")) as f:
        lines = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    assert 'ENTRYPOINT ["vfs-state-sidecar"]' in lines
    assert any(line.startswith("RUN pip install") and "[all,cli]" in line for line in lines)
    user = pod_spec()["securityContext"]["runAsUser"]
    assert f"USER {user}:{pod_spec()['securityContext']['runAsGroup']}" in lines
    for container in sidecars():
        assert container["image"].split("/")[-1].startswith("vfs-state-sidecar:")
