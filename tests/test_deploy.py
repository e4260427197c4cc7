"""deploy/: the cluster launcher configs validate with Ray's own validator, the
Kubernetes manifests hang together, every key is commented, and launch.sh refuses bad
arguments with a message. (launch.sh --local starting a real cluster is exercised in
tests/e2e/test_cluster.py.)"""

from __future__ import annotations

import copy
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
YAMLS = sorted([*DEPLOY.glob("*.yaml"), *DEPLOY.glob("k8s/*.yaml")])
_KEY = re.compile(r"^\s*(?:- )?[\"']?[A-Za-z_~][\w.~/-]*[\"']?:(?:\s|$)")


def test_there_are_configs_to_check() -> None:
    names = {p.relative_to(DEPLOY).as_posix() for p in YAMLS}
    assert {
        "ray-cluster.yaml",
        "ray-cluster-onprem.yaml",
        "k8s/raycluster.yaml",
        "k8s/master.yaml",
    } <= names


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.name)
def test_every_key_is_commented(path: Path) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    bare = []
    previous = ""
    for number, line in enumerate(lines, start=1):
        if _KEY.match(line) and "#" not in line and not previous.lstrip().startswith("#"):
            bare.append(f"{path.name}:{number}: {line.strip()}")
        if line.strip():
            previous = line
    assert bare == []


@pytest.mark.parametrize("name", ["ray-cluster.yaml", "ray-cluster-onprem.yaml"])
def test_cluster_launcher_configs_pass_rays_validator(name: str) -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((DEPLOY / name).read_text(encoding="utf-8"))
    validate_config(prepare_config(copy.deepcopy(config)))
    # The validator does reject a broken config (so passing above means something).
    broken = copy.deepcopy(config)
    broken["provider"]["no_such_key"] = 1
    broken["max_workers"] = "many"
    with pytest.raises(Exception):  # noqa: B017, PT011  jsonschema's ValidationError
        validate_config(prepare_config(broken))


def _docs(name: str) -> list[dict[str, Any]]:
    return list(yaml.safe_load_all((DEPLOY / "k8s" / name).read_text(encoding="utf-8")))


def test_kubernetes_manifests_hang_together() -> None:
    (ray_cluster,) = _docs("raycluster.yaml")
    secret, deployment, service = _docs("master.yaml")
    assert (ray_cluster["apiVersion"], ray_cluster["kind"]) == ("ray.io/v1", "RayCluster")
    assert [d["kind"] for d in (secret, deployment, service)] == [
        "Secret",
        "Deployment",
        "Service",
    ]
    namespaces = {d["metadata"]["namespace"] for d in (ray_cluster, secret, deployment, service)}
    assert namespaces == {"GRIDLESS_NAMESPACE"}
    # The master joins the RayCluster's head service (KubeRay names it <name>-head-svc).
    pod = deployment["spec"]["template"]["spec"]["containers"][0]
    args = pod["command"]
    assert args[:2] == ["gridless", "master"]
    assert (
        args[args.index("--ray-address") + 1] == f"{ray_cluster['metadata']['name']}-head-svc:6379"
    )
    head_ports = ray_cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["ports"]
    assert 6379 in {p["containerPort"] for p in head_ports}
    # Workers reach the master through the Service the advertise URL names.
    port = int(args[args.index("--port") + 1])
    assert (
        args[args.index("--advertise-url") + 1] == f"http://{service['metadata']['name']}:{port}"
    )
    assert service["spec"]["selector"] == deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    named = {p["name"]: p["containerPort"] for p in pod["ports"]}
    assert named[service["spec"]["ports"][0]["targetPort"]] == port
    assert pod["readinessProbe"]["httpGet"]["path"] == "/api/v1/health"
    # One master per database, and master and workers read the same secret.
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    worker = ray_cluster["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    secret_name = secret["metadata"]["name"]
    assert worker["envFrom"][0]["secretRef"]["name"] == secret_name
    assert pod["envFrom"][0]["secretRef"]["name"] == secret_name
    assert {"GRIDLESS_TOKEN", "GRIDLESS_DATABASE_URL", "GRIDLESS_STORE"} <= set(
        secret["stringData"]
    )


def _launch(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "GRIDLESS_CLUSTER_DIR": str(tmp_path / "c"),
    }
    return subprocess.run(
        [str(DEPLOY / "launch.sh"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_launch_sh_help_and_refusals(tmp_path: Path) -> None:
    assert subprocess.run(["bash", "-n", str(DEPLOY / "launch.sh")], check=False).returncode == 0
    helped = _launch("--help", tmp_path=tmp_path)
    assert helped.returncode == 0
    assert "--local N" in helped.stdout
    for args, message in [
        (("--local", "x"), "--local takes a number"),
        (("--frobnicate",), "unknown argument '--frobnicate'"),
        (("head", "--ray-port", "abc"), "expected a number, got 'abc'"),
        (("worker",), None),  # no ray on this PATH, or no --address: either way a refusal
    ]:
        result = _launch(*args, tmp_path=tmp_path)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        if message:
            assert message in result.stderr
    nothing = _launch("stop", tmp_path=tmp_path)
    assert nothing.returncode == 0  # stopping nothing is fine
