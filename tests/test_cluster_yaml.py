"""cluster.yaml, checked offline: Ray's own validator, then the invariants east_ray needs.

`prepare_config` merges the AWS defaults shipped inside Ray (a YAML file read from disk) and
`validate_config` checks the result against Ray's JSON schema; neither needs boto3 or
credentials, and the sockets are blocked while they run so that a future Ray that reached
for the network would fail here instead of calling a cloud. Both are private APIs: Ray is
pinned to 2.60. What `ray up` does next (AMI, subnets, security group, IAM) talks to AWS
and is not tested.
"""

from __future__ import annotations

import copy
import re
import shlex
import shutil
import socket
import subprocess
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray")
ray_util = pytest.importorskip("ray.autoscaler._private.util")
jsonschema = pytest.importorskip("jsonschema")
yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_YAML = ROOT / "cluster.yaml"
DOCS = ROOT / "docs" / "cluster.md"

IMAGE = "rayproject/ray:2.60.0-py311-gpu"
MOUNT = "/mnt/efs"

# On-Demand vCPU quotas by instance family: (quota name, Service Quotas code).
QUOTAS: dict[str, tuple[str, str]] = {
    "g5": ("Running On-Demand G and VT instances", "L-DB2E81BA"),
    "g6": ("Running On-Demand G and VT instances", "L-DB2E81BA"),
    "p4d": ("Running On-Demand P instances", "L-417A185B"),
    "p4de": ("Running On-Demand P instances", "L-417A185B"),
    "p5": ("Running On-Demand P instances", "L-417A185B"),
}
# Instance types rarely available on demand: their worker types start switched off.
RARELY_ON_DEMAND = {"p4d.24xlarge", "p4de.24xlarge", "p5.48xlarge"}
# An AWS region name (us-west-2, eu-central-1, us-gov-west-1, ...), or a zone (us-west-2a).
REGION = re.compile(
    r"\b(?:af|ap|ca|cn|eu|il|me|mx|sa|us)(?:-gov|-iso[a-z]?)?"
    r"-(?:north|south|east|west|central|northeast|southeast|northwest|southwest)-\d+[a-z]?\b"
)

# EC2 instance types: (vCPUs, NVIDIA GPUs, memory in GiB), from AWS's published specs.
INSTANCE_TYPES: dict[str, tuple[int, int, int]] = {
    "m6i.xlarge": (4, 0, 16),
    "m6i.2xlarge": (8, 0, 32),
    "m6i.4xlarge": (16, 0, 64),
    "m6i.8xlarge": (32, 0, 128),
    "g5.xlarge": (4, 1, 16),
    "g5.2xlarge": (8, 1, 32),
    "g5.4xlarge": (16, 1, 64),
    "g5.8xlarge": (32, 1, 128),
    "g5.16xlarge": (64, 1, 256),
    "g5.12xlarge": (48, 4, 192),
    "g5.24xlarge": (96, 4, 384),
    "g5.48xlarge": (192, 8, 768),
    "g6.12xlarge": (48, 4, 192),
    "g6.48xlarge": (192, 8, 768),
    "p4d.24xlarge": (96, 8, 1152),
    "p4de.24xlarge": (96, 8, 1152),
    "p5.48xlarge": (192, 8, 2048),
}


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection or name lookup while a test runs is an error."""

    def refuse(*args: object, **kwargs: object) -> Any:
        raise AssertionError(f"network access during an offline test: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def _load() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(CLUSTER_YAML.read_text())
    return config


def _validate(config: dict[str, Any]) -> dict[str, Any]:
    prepared: dict[str, Any] = ray_util.prepare_config(copy.deepcopy(config))
    ray_util.validate_config(prepared)
    return prepared


def _workers(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    head = config["head_node_type"]
    return {k: v for k, v in config["available_node_types"].items() if k != head}


def _run_options(config: dict[str, Any], role: str) -> list[str]:
    """The `docker run` options a head or worker container gets (global + per role)."""
    docker = config["docker"]
    return [*docker.get("run_options", []), *docker.get(f"{role}_run_options", [])]


def _gib(size: str) -> float:
    match = re.fullmatch(r"'?(\d+(?:\.\d+)?)([bkmg]?)'?", size.lower())
    assert match, f"unparsed --shm-size {size!r}"
    scale = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30}[match[2]]
    return float(match[1]) * scale / 2**30


def _shm_gib(options: list[str]) -> float:
    sizes = [o.split("=", 1)[1] for o in options if o.startswith("--shm-size=")]
    assert len(sizes) == 1, f"expected one --shm-size=..., got {options}"
    return _gib(sizes[0])


def _commands(config: dict[str, Any]) -> list[str]:
    keys = [k for k in config if k.endswith("_commands")]
    return [c for k in keys for c in config[k]]


# --- Ray's validator ----------------------------------------------------------------------


def test_ray_validator_accepts_cluster_yaml() -> None:
    config = _load()
    prepared = _validate(config)
    # The AWS defaults were merged around our values, not into them.
    assert prepared["available_node_types"].keys() == config["available_node_types"].keys()
    assert prepared["head_setup_commands"] == (
        config["setup_commands"] + config["head_setup_commands"]
    )
    assert prepared["worker_setup_commands"] == config["setup_commands"]
    assert prepared["available_node_types"][config["head_node_type"]]["max_workers"] == 0


def _unknown_top_level_key(c: dict[str, Any]) -> None:
    c["storage_path"] = MOUNT + "/results"


def _unknown_docker_key(c: dict[str, Any]) -> None:
    c["docker"]["shm_size"] = "64g"


def _node_type_without_resources(c: dict[str, Any]) -> None:
    del c["available_node_types"]["gpu_a10g_x4"]["resources"]


def _negative_resources(c: dict[str, Any]) -> None:
    c["available_node_types"]["gpu_a10g_x4"]["resources"]["GPU"] = -4


def _unknown_head_type(c: dict[str, Any]) -> None:
    c["head_node_type"] = "no_such_type"


def _min_workers_over_global_max(c: dict[str, Any]) -> None:
    for node_type in _workers(c).values():
        node_type["min_workers"] = c["max_workers"]


@pytest.mark.parametrize(
    "breakage",
    [
        _unknown_top_level_key,
        _unknown_docker_key,
        _node_type_without_resources,
        _negative_resources,
        _unknown_head_type,
        _min_workers_over_global_max,
    ],
)
def test_ray_validator_rejects_a_broken_copy(breakage: Callable[[dict[str, Any]], None]) -> None:
    broken = _load()
    breakage(broken)
    with pytest.raises((jsonschema.ValidationError, ValueError)):
        _validate(broken)


# --- Node types ---------------------------------------------------------------------------


def test_head_runs_no_trials() -> None:
    config = _load()
    head = config["available_node_types"][config["head_node_type"]]
    assert head["resources"].get("CPU") == 0
    assert head["resources"].get("GPU", 0) == 0
    assert head.get("max_workers", 0) == 0
    vcpus, gpus, _ = INSTANCE_TYPES[head["node_config"]["InstanceType"]]
    assert gpus == 0, "the head is a CPU instance"
    assert vcpus >= 4


def test_worker_resources_match_their_instance_types() -> None:
    workers = _workers(_load())
    assert workers, "no worker types"
    for name, node_type in workers.items():
        instance = node_type["node_config"]["InstanceType"]
        assert instance in INSTANCE_TYPES, f"{name}: add {instance} to INSTANCE_TYPES"
        vcpus, gpus, _ = INSTANCE_TYPES[instance]
        assert gpus > 0, f"{name}: {instance} is not a GPU instance"
        assert node_type["resources"] == {"CPU": vcpus, "GPU": gpus}, name


def test_max_workers_are_consistent() -> None:
    config = _load()
    total = config["max_workers"]
    workers = _workers(config)
    for name, node_type in workers.items():
        assert node_type["min_workers"] == 0, f"{name}: GPU workers scale from zero"
        assert 0 <= node_type["max_workers"] <= total, name
    assert any(t["max_workers"] > 0 for t in workers.values()), "no worker type is on"
    # Neither bound is dead: the global cap binds, and the types can reach it.
    assert total <= sum(t["max_workers"] for t in workers.values())


def _enable_note(name: str) -> str:
    """The comment block right above worker type `name` in cluster.yaml."""
    lines = CLUSTER_YAML.read_text().splitlines()
    at = lines.index(f"  {name}:")
    block: list[str] = []
    while lines[at - 1 - len(block)].lstrip().startswith("#"):
        block.insert(0, lines[at - 1 - len(block)].strip("# "))
    return " ".join(block)


def _enabled_max(name: str, node_type: dict[str, Any]) -> int:
    """A worker type's max_workers, or for one that is off, what its comment enables."""
    if node_type["max_workers"]:
        return int(node_type["max_workers"])
    match = re.search(r"To enable it, .*set max_workers: (\d+) here", _enable_note(name))
    assert match, (
        f"{name}: say above it how to enable it ('To enable it, ... set max_workers: N here')"
    )
    return int(match[1])


def test_rarely_available_types_are_off_until_enabled() -> None:
    """p4d and the like are seldom free on demand and need a quota new accounts lack: their
    worker types start at max_workers 0, with a comment saying how to enable them."""
    config = _load()
    workers = _workers(config)
    off = {n for n, t in workers.items() if t["node_config"]["InstanceType"] in RARELY_ON_DEMAND}
    assert off, "expected an opt-in p4d type"
    for name in off:
        assert workers[name]["max_workers"] == 0, name
        enabled = _enabled_max(name, workers[name])
        assert enabled >= 1, name
        # Enabling it raises the global cap so that both types reach their maximum.
        full = sum(_enabled_max(n, t) for n, t in workers.items())
        assert f"the global max_workers above to {full}" in _enable_note(name), name
    for name, node_type in workers.items():
        if name not in off:
            assert node_type["max_workers"] > 0, f"{name}: only rare types start switched off"


def test_documented_gpu_quota_matches_the_config() -> None:
    """docs/cluster.md's quota table: per worker type, the instance, its vCPUs, max_workers,
    the quota it draws on and the vCPUs needed (max_workers x vCPUs), and the full total."""
    workers = _workers(_load())
    text = DOCS.read_text()
    rows = {
        cells[0].strip("`"): cells
        for line in text.splitlines()
        if line.strip().startswith("| `")
        for cells in [[c.strip() for c in line.strip().strip("|").split("|")]]
    }
    full = 0
    for name, node_type in workers.items():
        assert name in rows, f"docs/cluster.md: no quota row for {name}"
        instance, vcpus_cell, max_cell, quota_cell, needed_cell = rows[name][1:6]
        expected_instance = node_type["node_config"]["InstanceType"]
        vcpus = INSTANCE_TYPES[expected_instance][0]
        quota, code = QUOTAS[expected_instance.split(".")[0]]
        current, enabled = node_type["max_workers"], _enabled_max(name, node_type)
        assert instance == f"`{expected_instance}`", name
        assert int(vcpus_cell) == vcpus, name
        assert quota_cell == f"{quota} (`{code}`)", name
        if current:
            assert (int(max_cell), int(needed_cell)) == (current, current * vcpus), name
        else:
            assert max_cell == f"0 ({enabled} when enabled)", name
            assert needed_cell == f"0 ({enabled * vcpus} when enabled)", name
        full += enabled * vcpus
    assert f"The full config (both types enabled) needs {full} vCPUs" in text
    assert "New accounts often" in text and "request-service-quota-increase" in text


# --- Region -------------------------------------------------------------------------------


def test_the_region_is_named_in_one_place() -> None:
    config = _load()
    region = config["provider"]["region"]
    assert REGION.fullmatch(region), region
    named = REGION.findall(CLUSTER_YAML.read_text())
    assert named == [region], f"cluster.yaml names a region outside provider.region: {named}"
    assert set(config["provider"]) == {"type", "region", "cache_stopped_nodes"}  # no zones
    # The nodes ask the instance metadata for their region; the docs read it from the file.
    mount = " ".join(config["initialization_commands"])
    assert "meta-data/placement/region" in mount and "$EAST_RAY_REGION" in mount
    docs = DOCS.read_text()
    assert REGION.findall(docs) == [], "docs/cluster.md names a region: use provider.region"
    assert "`provider.region`" in docs and "['provider']['region']" in docs


def test_efs_security_group_step_comes_before_the_first_ray_up() -> None:
    """Without NFS from the nodes' group to the mount targets, the first `ray up` hangs at
    the mount: the guide makes that step required and puts it before any `ray up`."""
    text = DOCS.read_text()
    step = text.index("**EFS and its security group (required, before the first `ray up`).**")
    first_up = text.index("```sh\nray up cluster.yaml")
    assert step < first_up
    section = text[step:first_up]
    for needed in (
        "--group-name ray-autoscaler-east-ray",
        "--protocol tcp --port 2049 --source-group",
        "create-mount-target",
    ):
        assert needed in section, needed
    assert text.index("**GPU quota.**") < step
    header = CLUSTER_YAML.read_text().split("cluster_name:")[0]
    assert "REQUIRED" in header and "TCP 2049" in header and "ray-autoscaler-east-ray" in header


def test_every_node_uses_the_same_explicit_ami() -> None:
    amis = {t["node_config"].get("ImageId") for t in _load()["available_node_types"].values()}
    assert len(amis) == 1
    (ami,) = amis
    assert isinstance(ami, str)
    assert re.fullmatch(r"ami-[0-9a-f]{8,17}|ami-REPLACE_ME", ami), ami


# --- Container ----------------------------------------------------------------------------


def test_image_is_ray_of_the_pinned_version() -> None:
    docker = _load()["docker"]
    assert docker["image"] == IMAGE
    assert f"rayproject/ray:{ray.__version__}-py311-gpu" == IMAGE
    assert not {"head_image", "worker_image"} & docker.keys()
    pins = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert f"ray[tune,data]=={ray.__version__.rsplit('.', 1)[0]}.*" in pins


def test_run_options_size_shm_and_raise_file_limits() -> None:
    config = _load()
    # Per-type `docker` sections would replace worker_run_options; there are none.
    assert not [t for t in config["available_node_types"].values() if "docker" in t]
    head_instance = config["available_node_types"][config["head_node_type"]]["node_config"]
    head_ram = INSTANCE_TYPES[head_instance["InstanceType"]][2]
    worker_ram = min(
        INSTANCE_TYPES[t["node_config"]["InstanceType"]][2] for t in _workers(config).values()
    )
    for role, ram in (("head", head_ram), ("worker", worker_ram)):
        options = _run_options(config, role)
        # Ray refuses an object store over 10 GB on a smaller /dev/shm; stay under the RAM.
        assert 10 <= _shm_gib(options) < ram, role
        assert "--ulimit nofile=65536:65536" in options, role
        assert f"--volume {MOUNT}:{MOUNT}" in options, role
    assert "--gpus all" in _run_options(config, "worker")
    assert "--gpus all" not in _run_options(config, "head")


def test_launcher_builds_the_expected_docker_run() -> None:
    """The `docker run` line Ray's own helper builds for the head, from this file."""
    from ray.autoscaler._private.docker import docker_start_cmds

    config = _load()
    line = docker_start_cmds(
        config["auth"]["ssh_user"],
        config["docker"]["image"],
        config["file_mounts"],
        config["docker"]["container_name"],
        _run_options(config, "head"),
        config["cluster_name"],
        "/home/ray",
        "docker",
    )
    words = shlex.split(line)
    assert words[-2:] == [IMAGE, "bash"]
    assert "--net=host" in words
    assert "--shm-size=12g" in words
    assert [w for w in words if w.endswith(":/home/ray/.ray/auth_token")]
    assert [w for w in words if w.endswith(":/home/ray/east_ray")]
    assert "RAY_AUTH_MODE=token" in words


# --- Install ------------------------------------------------------------------------------


def _uv() -> str:
    local = ROOT / ".uv" / "bin" / "uv"  # what `make install` bootstraps
    found = str(local) if local.is_file() else shutil.which("uv")
    if found is None:
        pytest.skip("uv is not installed (run `make install`)")
    return found


def test_setup_installs_exactly_the_lock_with_the_makefiles_uv() -> None:
    config = _load()
    assert config["file_mounts"]["/home/ray/east_ray"] == "."
    setup = config["setup_commands"]
    makefile = (ROOT / "Makefile").read_text()
    pins = {
        k: re.search(rf"^{k} := (\S+)$", makefile, re.MULTILINE)
        for k in ("UV_VERSION", "UV_SHA256")
    }
    assert all(pins.values()), f"Makefile: {pins}"
    version, sha = pins["UV_VERSION"][1], pins["UV_SHA256"][1]
    assert any(f"uv=={version} --hash=sha256:{sha}" in c and "--require-hashes" in c for c in setup)
    (install,) = [c for c in setup if "uv export" in c]
    assert (
        "uv pip install --system --quiet --no-deps --require-hashes --compile-bytecode -r"
        in install
    )
    assert setup[-1] == "python -m east_ray.check_install"

    # Run the cluster's own export here: it must accept this uv.lock as up to date and pin
    # every package it installs to one version and hash.
    export = next(p for p in install.split(" && ") if p.startswith("uv export"))
    words = shlex.split(export)
    out = words.index("-o")
    del words[out : out + 2]  # to stdout
    listing = subprocess.run(
        [_uv(), *words[1:]], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    entries = re.findall(
        r"^([A-Za-z0-9_.\-]+)==(\S+) ;[^\n]*((?:\n\s+--hash=\S+[^\n]*)+)", listing, re.M
    )
    names = {name.lower(): version for name, version, _ in entries}
    requirements = [line for line in listing.splitlines() if re.match(r"^[A-Za-z0-9]", line)]
    assert len(entries) == len(requirements) > 50  # every requirement is pinned and hashed
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for pin in [*project["dependencies"], *project["optional-dependencies"]["teachers"]]:
        match = re.fullmatch(r"(torch|torchaudio|torchvision)==(\S+)", pin)
        if match:
            assert names[match[1]] == match[2], pin
    assert {"musicnn", "tinysoundfont", "hear21passt"} <= names.keys()
    assert not {"tensorflow", "pyaudio", "pytest", "mypy"} & names.keys()
    assert names["ray"] == ray.__version__


def test_big_local_folders_are_not_uploaded() -> None:
    config = _load()
    assert ".gitignore" in config["rsync_filter"]
    assert {".git", ".venv"} <= set(config["rsync_exclude"])
    ignored = (ROOT / ".gitignore").read_text().split()
    assert {".venv/", "/data/", "/results/"} <= set(ignored)


# --- Storage ------------------------------------------------------------------------------


def test_storage_is_the_shared_nfs_mount() -> None:
    config = _load()
    mounts = [
        m
        for c in config["initialization_commands"]
        for m in re.finditer(r"mount -t nfs4 -o \S+\s+\"?([^\s\"]+)\"?\s+([^\s;]+)", c)
    ]
    assert len(mounts) == 1, "expected one NFS mount in initialization_commands"
    source, target = mounts[0][1], mounts[0][2]
    assert target == MOUNT
    assert not target.startswith(("/home", "/root", "/tmp", "~")), target
    assert source == "$EAST_RAY_EFS_ID.efs.$EAST_RAY_REGION.amazonaws.com:/"
    ids = re.findall(r"EAST_RAY_EFS_ID=(\S+?);", " ".join(config["initialization_commands"]))
    assert len(ids) == 1 and re.fullmatch(r"fs-[0-9a-f]{8,17}|fs-REPLACE_ME", ids[0]), ids
    # Nodes that are stopped and restarted would not remount it.
    assert config["provider"]["cache_stopped_nodes"] is False
    # Inside the containers: refuse to set up or start Ray unless it really is NFS.
    check = f'test "$(stat -f -c %T {MOUNT})" = nfs'
    for key in ("setup_commands", "head_start_ray_commands", "worker_start_ray_commands"):
        assert any(c.startswith(check) for c in config[key]), key


def test_documented_paths_are_on_the_shared_mount() -> None:
    text = DOCS.read_text()
    paths = re.findall(r"--(?:storage|data|data-root|raw|out|root|logdir)[ =](\S+)", text)
    assert any("--storage" in line for line in text.splitlines())
    assert paths
    for path in paths:
        assert path.strip("'\"`").startswith(MOUNT + "/"), path


def test_documented_study_commands_parse() -> None:
    """Every `python -m east_ray.study ...` in the cluster guide and the README is a command
    line the study CLI accepts, and the cluster's one command downloads what is missing."""
    from east_ray.study.__main__ import build_parser

    for doc in (DOCS, ROOT / "README.md"):
        commands = re.findall(r"python -m east_ray\.study ([^'`\n]+)", doc.read_text())
        assert commands, doc
        for command in commands:
            build_parser().parse_args(shlex.split(command, comments=True))
    cluster = re.findall(r"ray exec cluster\.yaml --tmux '([^']+)'", DOCS.read_text())
    studies = [c for c in cluster if "east_ray.study" in c]
    assert studies
    for one in studies:
        args = build_parser().parse_args(shlex.split(one)[3:])
        assert args.download and args.address == "auto" and args.max_concurrent
        data = args.data or args.data_root
        assert all(str(p).startswith(MOUNT + "/") for p in (args.raw, data, args.storage))


# --- Security -----------------------------------------------------------------------------


def test_no_credentials_in_the_file() -> None:
    text = CLUSTER_YAML.read_text()
    assert not re.search(r"(?:AKIA|ASIA)[0-9A-Z]{16}", text), "AWS access key id"
    assert not re.search(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+=]{40}(?![A-Za-z0-9/+=])", text)
    assert not re.search(r"aws_(?:secret_access_key|access_key_id|session_token)", text, re.I)
    assert "PRIVATE KEY" not in text
    assert "RAY_AUTH_TOKEN=" not in text
    config = _load()
    assert set(config["auth"]) == {"ssh_user"}, "the launcher makes its own key pair"
    for node_type in config["available_node_types"].values():
        assert "KeyName" not in node_type["node_config"]


def test_token_authentication_reaches_every_node() -> None:
    config = _load()
    assert "--env RAY_AUTH_MODE=token" in config["docker"]["run_options"]
    assert config["file_mounts"]["/home/ray/.ray/auth_token"] == "~/.ray/auth_token"
    assert not any("RAY_AUTH_MODE=disabled" in c for c in _commands(config))


def test_nothing_is_exposed_beyond_ssh() -> None:
    config = _load()
    head_start = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start
    assert "--autoscaling-config=~/ray_bootstrap_config.yaml" in head_start
    assert "--head --port=6379" in head_start
    assert "--address=$RAY_HEAD_IP:6379" in " ".join(config["worker_start_ray_commands"])
    for command in _commands(config):
        assert "0.0.0.0" not in command, command
    for role in ("head", "worker"):
        for option in _run_options(config, role):
            assert not option.startswith(("-p ", "--publish", "--privileged")), option
    # Only the launcher's default rules (SSH + intra-cluster): no extra ingress.
    assert not config["provider"].get("security_group", {}).get("IpPermissions")
    assert config["head_start_ray_commands"][0] == "ray stop"
    assert config["worker_start_ray_commands"][0] == "ray stop"
