"""deploy/: the cluster launcher configs validate with Ray's own validator, the
Kubernetes manifests hang together, every key is commented, the GPU worker groups (issue
16) get GPUs and torch's CUDA build, and launch.sh refuses bad arguments with a message.
(launch.sh --local starting a real cluster is exercised in tests/e2e/test_cluster.py.)"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
YAMLS = sorted([*DEPLOY.glob("*.yaml"), *DEPLOY.glob("k8s/*.yaml")])
LAUNCHER_CONFIGS = ["ray-cluster.yaml", "ray-cluster-onprem.yaml"]
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


def _launcher_config(name: str) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load((DEPLOY / name).read_text(encoding="utf-8"))
    return config


def test_the_aws_config_matches_rays_schema_as_written() -> None:
    # Node types with their own worker_setup_commands are in the schema itself. (The
    # on-premise file's top-level min_workers is the local provider's own input, which
    # Ray moves into its single node type before validating: the next test.)
    import jsonschema
    import ray.autoscaler

    schema_file = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
    schema = json.loads(schema_file.read_text(encoding="utf-8"))
    jsonschema.validate(_launcher_config("ray-cluster.yaml"), schema)


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_cluster_launcher_configs_pass_rays_validator(name: str) -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = _launcher_config(name)
    validate_config(prepare_config(copy.deepcopy(config)))
    # The validator does reject a broken config (so passing above means something).
    broken = copy.deepcopy(config)
    broken["provider"]["no_such_key"] = 1
    broken["max_workers"] = "many"
    with pytest.raises(Exception):  # noqa: B017, PT011  jsonschema's ValidationError
        validate_config(prepare_config(broken))


def _torch_index(commands: list[str]) -> str | None:
    """The PyTorch wheel index (`cpu`, `cu128`, ...) the pinned torch is installed from."""
    for command in commands:
        found = re.search(
            r"torch==2\.13\.0 --index-url https://download\.pytorch\.org/whl/(\S+)", command
        )
        if found:
            return found.group(1)
    return None


def test_aws_gpu_workers_get_gpus_and_torchs_cuda_build() -> None:
    config = _launcher_config("ray-cluster.yaml")
    types = config["available_node_types"]
    gpu = types["ray.worker.gpu"]
    assert gpu["resources"]["GPU"] >= 1
    assert gpu["min_workers"] == 0  # no GPU instance billed while no GPU study runs
    assert gpu["max_workers"] <= config["max_workers"]
    # Ray runs a node type's own worker_setup_commands instead of setup_commands: the GPU
    # type makes the same venv, installs the CUDA build of the pinned torch, then gridless
    # with the torch extra (which that torch satisfies).
    setup, own = config["setup_commands"], gpu["worker_setup_commands"]
    assert own[0] == setup[0]
    assert _torch_index(setup) == "cpu"
    assert _torch_index(own) not in {None, "cpu"}
    assert "torch]" in own[-1]
    assert [c for c in own if "torch==" in c] == [own[1]]
    # CPU workers keep one instance: gridless starts a study's workers only when a live
    # node can hold one (the autoscaler adds more for the workers that then wait).
    assert types["ray.worker.default"]["min_workers"] >= 1
    assert types[config["head_node_type"]]["resources"] == {"CPU": 0}


def _fake_tools(home: Path, gpus: int | None) -> dict[str, str]:
    """An environment whose ~/gridless-venv/bin/{ray,pip} print their arguments and whose
    nvidia-smi lists `gpus` GPUs (None: not installed; 0: installed, no driver)."""
    tools = home / "tools"
    venv = home / "gridless-venv" / "bin"
    for folder in (tools, venv):
        folder.mkdir(parents=True, exist_ok=True)
    for name in ("grep", "wc"):
        found = shutil.which(name)
        assert found is not None
        (tools / name).unlink(missing_ok=True)
        (tools / name).symlink_to(found)
    for name in ("ray", "pip"):
        (venv / name).write_text(f'#!/bin/sh\necho {name} "$@"\n', encoding="utf-8")
        (venv / name).chmod(0o755)
    smi = tools / "nvidia-smi"
    smi.unlink(missing_ok=True)
    if gpus == 0:  # what nvidia-smi says without a working driver
        smi.write_text(
            "#!/bin/sh\necho 'NVIDIA-SMI has failed because it could not communicate with "
            "the NVIDIA driver.'\nexit 9\n",
            encoding="utf-8",
        )
    elif gpus:
        lines = "".join(f"echo 'GPU {i}: NVIDIA A10G (UUID: GPU-{i})'\n" for i in range(gpus))
        smi.write_text(f"#!/bin/sh\n{lines}", encoding="utf-8")
    if smi.exists():
        smi.chmod(0o755)
    return {"PATH": str(tools), "HOME": str(home), "RAY_HEAD_IP": "10.0.0.1"}


@pytest.mark.parametrize(
    ("gpus", "offered", "index"), [(None, 0, "cpu"), (0, 0, "cpu"), (2, 2, "CUDA_TAG")]
)
def test_onprem_workers_offer_the_gpus_nvidia_smi_lists(
    tmp_path: Path, gpus: int | None, offered: int, index: str
) -> None:
    config = _launcher_config("ray-cluster-onprem.yaml")
    env = _fake_tools(tmp_path, gpus)
    bash = shutil.which("bash")
    assert bash is not None

    def ran(command: str) -> str:
        done = subprocess.run(
            [bash, "-c", command], env=env, capture_output=True, text=True, check=True
        )
        return done.stdout.strip()

    (torch,) = [c for c in config["setup_commands"] if "torch==" in c]
    assert ran(torch) == (
        f"pip install --quiet torch==2.13.0 --index-url https://download.pytorch.org/whl/{index}"
    )
    start = ran(config["worker_start_ray_commands"][-1])
    assert start.startswith("ray start --address=10.0.0.1:6379 ")
    assert start.endswith(f" --num-gpus={offered}")


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
    secret_name = secret["metadata"]["name"]
    for group in ray_cluster["spec"]["workerGroupSpecs"]:
        worker = group["template"]["spec"]["containers"][0]
        assert worker["envFrom"][0]["secretRef"]["name"] == secret_name
    assert pod["envFrom"][0]["secretRef"]["name"] == secret_name
    assert {"GRIDLESS_TOKEN", "GRIDLESS_DATABASE_URL", "GRIDLESS_STORE"} <= set(
        secret["stringData"]
    )


def test_kubernetes_gpu_workers_hold_one_whole_gpu_each() -> None:
    (ray_cluster,) = _docs("raycluster.yaml")
    groups = {g["groupName"]: g for g in ray_cluster["spec"]["workerGroupSpecs"]}
    assert set(groups) == {"workers", "gpu"}
    gpu = groups["gpu"]
    assert gpu["replicas"] == gpu["minReplicas"] == 0  # no GPU pod until one is asked for
    assert gpu["maxReplicas"] >= 1
    (container,) = gpu["template"]["spec"]["containers"]
    resources = container["resources"]
    # Kubernetes hands out whole GPUs, its request equal to its limit; KubeRay passes the
    # limit to `ray start --num-gpus`, so rayStartParams does not repeat it.
    assert resources["limits"]["nvidia.com/gpu"] == resources["requests"]["nvidia.com/gpu"] == 1
    assert "num-gpus" not in gpu["rayStartParams"]
    cpu_container = groups["workers"]["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in cpu_container["resources"]["limits"]
    assert container["image"] != cpu_container["image"]  # torch's CUDA build lives there
    assert container["name"] == cpu_container["name"]


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
    assert "--node-gpus N" in helped.stdout
    for args, message in [
        (("--local", "x"), "--local takes a number"),
        (("--frobnicate",), "unknown argument '--frobnicate'"),
        (("head", "--ray-port", "abc"), "expected a number, got 'abc'"),
        (("--local", "1", "--node-gpus", "0.5"), "expected a number, got '0.5'"),
        (("worker", "--node-gpus"), "--node-gpus needs a number"),
        (("worker",), None),  # no ray on this PATH, or no --address: either way a refusal
    ]:
        result = _launch(*args, tmp_path=tmp_path)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        if message:
            assert message in result.stderr
    nothing = _launch("stop", tmp_path=tmp_path)
    assert nothing.returncode == 0  # stopping nothing is fine
