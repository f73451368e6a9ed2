"""``cellscale gke up|down|print|size``: the GKE cluster that ``profiles/gke`` runs on, as code.

The profile is the single source of truth: the node pools get the machine types its rules ask for
(``machine_type`` in default-resources for the spot CPU pool, in set-resources of ``segment`` for the GPU pool), the
namespace and service account it names, and the bucket and image it computes from the same environment
variables (``CELLSCALE_GCP_PROJECT``, ``CELLSCALE_REGION``, ``CELLSCALE_BUCKET``, ``CELLSCALE_IMAGE``). What
Kubernetes objects the profile relies on are plain manifests in ``profiles/gke/manifests/``.

``--dry-run`` (and ``print``) shows every gcloud and kubectl command without running anything. The commands run in
the current folder, the workflow's checkout (``up`` builds its ``Dockerfile`` and uploads its ``models/`` and
``data/demo/``); the profile is read from ``--profile-dir`` (default ``profiles/gke`` in the current folder).
``size`` is ``cellscale size --profile gke`` (:mod:`.sizing`).

``up --plan DIR/plan.json`` takes the node pools from a plan of ``cellscale plan`` (:mod:`cellscale.cost`): machine
types, spot or on-demand, and each pool's autoscaling maximum (a plan without a GPU pool creates none). Run the
workflow with the same plan: ``snakemake --profile gke --workflow-profile DIR``.

``snakemake --profile gke`` finds a profile by that name in the current folder or in Snakemake's user
configuration folder (``~/.config/snakemake`` on Linux), and ``profiles/gke`` is neither. ``up`` (and
``install-profile`` alone) links the checkout's ``profiles/gke`` there, so the bare name works from any folder;
``--profile profiles/gke`` keeps working.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from cellscale.cost.model import allocatable_cpu, allocatable_memory_mb
from cellscale.deploy import sizing

PROFILE_DIR = Path("profiles/gke")   # relative to the current folder: the user's workflow checkout
GPU_RULE = "segment"
# vCPUs, memory (GiB) and GPUs of the machine types the profile may name; GPUs come with g2 (L4) only,
# an n1 type gets a T4 through --accelerator.
MACHINES = {
    "e2-medium": (2, 4, 0), "e2-standard-2": (2, 8, 0), "e2-standard-4": (4, 16, 0),
    "e2-standard-8": (8, 32, 0), "e2-highmem-4": (4, 32, 0), "n2-standard-4": (4, 16, 0),
    "n2d-standard-4": (4, 16, 0), "n1-standard-4": (4, 15, 0), "n1-standard-8": (8, 30, 0),
    "n2-standard-8": (8, 32, 0), "n2-standard-16": (16, 64, 0), "n2d-standard-8": (8, 32, 0),
    "e2-standard-16": (16, 64, 0), "n1-standard-16": (16, 60, 0),
    "g2-standard-4": (4, 16, 1), "g2-standard-8": (8, 32, 1), "g2-standard-12": (12, 48, 1),
    "a2-highgpu-1g": (12, 85, 1), "a3-highgpu-1g": (26, 234, 1),
}
# The --accelerator type of a GPU pool: implied by g2/a2/a3 machines, chosen for n1 (a T4 unless the plan says).
ACCELERATORS = {"g2": "nvidia-l4", "a2": "nvidia-tesla-a100", "a3": "nvidia-h100-80gb", "n1": "nvidia-tesla-t4"}
PLAN_GPUS = {"L4": "nvidia-l4", "T4": "nvidia-tesla-t4", "A100-40GB": "nvidia-tesla-a100",
             "H100-80GB": "nvidia-h100-80gb"}


INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"


@dataclass(frozen=True)
class Pool:
    """A node pool as the scheduler sees one node of it: labels, taints and what pods may request."""

    name: str
    machine_type: str
    cpu: float            # allocatable cores left for workload pods on one node
    memory_mb: float      # allocatable memory (MB = 10^6 bytes, the unit the plugin requests in)
    gpus: int = 0
    spot: bool = False
    taints: tuple[tuple[str, str, str], ...] = ()   # (key, value, effect)

    @property
    def labels(self) -> dict[str, str]:
        labels = {INSTANCE_TYPE_LABEL: self.machine_type, "cloud.google.com/gke-nodepool": self.name}
        if self.spot:
            labels["cloud.google.com/gke-spot"] = "true"
        return labels


@contextlib.contextmanager
def _environ(environ: dict[str, str] | None):
    if environ is None:
        yield
        return
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def check_profile_dir(profile_dir: Path = PROFILE_DIR) -> Path:
    """``profile_dir`` if it holds a profile (config.yaml), else FileNotFoundError naming the folder."""
    config = Path(profile_dir) / "config.yaml"
    if not config.is_file():
        raise FileNotFoundError(
            f"no GKE profile in {Path(profile_dir).absolute()} ({config.name} is missing): run from the workflow's "
            f"checkout (the folder holding {PROFILE_DIR}) or pass --profile-dir")
    return Path(profile_dir)


def load_profile(profile_dir: Path = PROFILE_DIR, environ: dict[str, str] | None = None) -> dict:
    """The profile's settings as Snakemake reads them (YTE evaluated with ``environ``, default: os.environ)."""
    import yte

    with _environ(environ), open(check_profile_dir(profile_dir) / "config.yaml") as f:
        return yte.process_yaml(f, require_use_yte=True)


def allocatable(machine_type: str) -> tuple[float, float, int]:
    """CPUs, memory (MB) and GPUs that pods can request on one GKE node of this type.

    GKE's documented reservations (CPU: 6% of the first core, 1% of the second, 0.5% of the next two, 0.25%
    above; memory: 25% of the first 4 GiB, 20% of the next 4, 10% of the next 8, 6% of the next 112, plus a
    100 MiB eviction threshold), less what GKE's DaemonSets use.
    """
    if machine_type not in MACHINES:
        raise ValueError(f"unknown machine type {machine_type!r}; add it to cellscale.deploy.gke.MACHINES")
    cpus, gib, gpus = MACHINES[machine_type]
    return round(allocatable_cpu(cpus), 2), round(allocatable_memory_mb(gib)), gpus


@dataclass(frozen=True)
class Settings:
    """Everything the cluster set-up needs; built by :func:`settings` from the profile and the environment."""

    project: str
    region: str
    zone: str
    cluster: str
    bucket: str
    prefix: str               # folder in the bucket the profile's default-storage-prefix points at
    image: str
    namespace: str
    service_account: str      # Kubernetes service account of the pods
    spot_machine_type: str
    gpu_machine_type: str
    gpu_type: str = "nvidia-l4"
    system_machine_type: str = "e2-medium"
    gpu_max_nodes: int = 4    # 0: no GPU pool (a plan that runs every rule on CPU nodes)
    spot_max_nodes: int = 20
    gpu_spot: bool = False
    cpu_spot: bool = True
    kubernetes_version: str = "1.36"   # MutatingAdmissionPolicy (the job defaults) is GA from 1.36

    @property
    def runner_gsa(self) -> str:
        return f"cellscale-runner@{self.project}.iam.gserviceaccount.com"

    @property
    def nodes_gsa(self) -> str:
        return f"cellscale-nodes@{self.project}.iam.gserviceaccount.com"

    @property
    def repository(self) -> str:
        return "cellscale"

    @property
    def cpu_pool(self) -> str:
        return "spot-cpu" if self.cpu_spot else "cpu"

    def pools(self) -> list[Pool]:
        """The node pools as the scheduler sees them: system (on-demand), GPU (tainted; none when its maximum
        is 0), CPU (spot unless a plan says on-demand)."""
        def pool(name, machine, spot=False, taints=()):
            cpu, mem, gpus = allocatable(machine)
            return Pool(name, machine, cpu, mem, gpus, spot, taints)
        pools = [pool("default-pool", self.system_machine_type)]
        if self.gpu_max_nodes > 0:
            pools.append(pool("gpu", self.gpu_machine_type, spot=self.gpu_spot,
                              taints=(("nvidia.com/gpu", "present", "NoSchedule"),)))
        return pools + [pool(self.cpu_pool, self.spot_machine_type, spot=self.cpu_spot)]


def with_plan(s: Settings, plan: dict, source: str = "the plan") -> Settings:
    """``s`` with the node pools of a ``cellscale plan`` (its ``pools``: name, machine_type, count, spot, and
    for a GPU pool gpus_per_node and gpu): machine types, spot or not, and autoscaling maxima."""
    pools = plan.get("pools")
    if not isinstance(pools, list) or not pools:
        raise ValueError(f"{source}: no pools (expected the JSON that `cellscale plan --json` prints)")
    gpu = [p for p in pools if p.get("name") == "gpu"]
    cpu = [p for p in pools if p.get("name") in ("spot-cpu", "cpu")]
    if len(gpu) > 1 or len(cpu) != 1:
        raise ValueError(f"{source}: expected one CPU pool (spot-cpu or cpu) and at most one gpu pool, got "
                         f"{', '.join(str(p.get('name')) for p in pools)}")
    for p in pools:
        if p.get("machine_type") not in MACHINES:
            raise ValueError(f"{source}: pool {p.get('name')!r}: unknown machine type {p.get('machine_type')!r}; "
                             "add it to cellscale.deploy.gke.MACHINES")
    changes = {"spot_machine_type": cpu[0]["machine_type"], "spot_max_nodes": int(cpu[0]["count"]),
               "cpu_spot": bool(cpu[0].get("spot", True)), "gpu_max_nodes": 0}
    if gpu and int(gpu[0]["count"]) > 0:
        g = gpu[0]
        changes.update(gpu_machine_type=g["machine_type"], gpu_max_nodes=int(g["count"]),
                       gpu_spot=bool(g.get("spot", False)),
                       gpu_type=PLAN_GPUS.get(g.get("gpu"), ACCELERATORS.get(g["machine_type"].split("-")[0],
                                                                             s.gpu_type)))
    return replace(s, **changes)


def plan_file(path: Path) -> Path:
    """``DIR/plan.json`` for the folder a ``cellscale plan --out DIR`` wrote, or the file itself."""
    path = Path(path)
    return path / "plan.json" if path.is_dir() else path


def read_plan(path: Path) -> dict:
    """The JSON of a ``cellscale plan --out DIR`` (DIR or DIR/plan.json)."""
    path = plan_file(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise SystemExit(f"cellscale gke: {path}: no such plan (write one with `cellscale plan ... --out DIR`)")
    except json.JSONDecodeError as err:
        raise SystemExit(f"cellscale gke: {path}: not a plan's JSON ({err})")


def snakemake_profile_home() -> Path:
    """Snakemake's user configuration folder, where ``--profile NAME`` looks after the current folder
    (Snakemake asks platformdirs, as here; without it, the XDG folder)."""
    try:
        from platformdirs import user_config_dir
    except ImportError:  # platformdirs comes with Snakemake; this is the Linux answer without it
        return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "snakemake"
    return Path(user_config_dir("snakemake", "snakemake"))


def install_profile(profile_dir: Path = PROFILE_DIR, home: Path | None = None, name: str = "gke",
                    force: bool = False) -> Path:
    """Link ``profile_dir`` as ``<Snakemake's profile home>/<name>`` so ``snakemake --profile gke`` finds it
    from any folder. An existing link is replaced; anything else there is left alone unless ``force``."""
    source = check_profile_dir(profile_dir).resolve()
    target = Path(home or snakemake_profile_home()) / name
    if target.is_symlink():
        target.unlink()
    elif target.exists():
        if not force:
            raise SystemExit(f"cellscale gke: {target} exists and is not a link made by cellscale; move it away "
                             "or pass --force to replace it")
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(source, target_is_directory=True)
    return target


def settings(profile_dir: Path = PROFILE_DIR, environ: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ if environ is None else environ)
    profile = load_profile(profile_dir, env)
    prefix = profile["default-storage-prefix"]
    if not prefix.startswith("gs://"):
        raise ValueError(f"{profile_dir}/config.yaml: default-storage-prefix {prefix!r} is not a gs:// URL")
    bucket, _, folder = prefix[len("gs://"):].partition("/")
    region = env.get("CELLSCALE_REGION") or "us-central1"
    return Settings(
        project=profile["storage-gcs-project"],
        region=region,
        zone=env.get("CELLSCALE_ZONE") or f"{region}-a",
        cluster=env.get("CELLSCALE_CLUSTER") or "cellscale",
        bucket=bucket,
        prefix=folder,
        image=profile["container-image"],
        namespace=profile["kubernetes-namespace"],
        service_account=profile["kubernetes-service-account-name"],
        spot_machine_type=profile["default-resources"]["machine_type"],
        gpu_machine_type=profile["set-resources"][GPU_RULE]["machine_type"],
        gpu_type=env.get("CELLSCALE_GPU_TYPE") or "nvidia-l4",
    )


def manifest_files(profile_dir: Path = PROFILE_DIR) -> list[Path]:
    return sorted(Path(p) for p in glob.glob(str(Path(profile_dir) / "manifests" / "*.yaml")))


def manifests(profile_dir: Path = PROFILE_DIR) -> list[dict]:
    """Every Kubernetes object ``up`` applies, in order."""
    docs = []
    for path in manifest_files(profile_dir):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def up_commands(s: Settings, profile_dir: Path = PROFILE_DIR, build_image: bool = True,
                upload: tuple[str, ...] = ("models", "data/demo")) -> list[list[str]]:
    """From an empty project to a cluster the profile can run on (each command is idempotent to rerun
    except the creations, which fail harmlessly with 'already exists')."""
    p, z = ["--project", s.project], ["--zone", s.zone]
    nodes_sa = ["--service-account", s.nodes_gsa]
    common_pool = [*p, *z, "--cluster", s.cluster, "--enable-autoscaling", "--min-nodes", "0", "--num-nodes", "0",
                   "--disk-size", "100", *nodes_sa, "--workload-metadata", "GKE_METADATA"]
    accelerator = f"type={s.gpu_type},count=1,gpu-driver-version=default"
    gpu_spot = ["--spot"] if s.gpu_spot else []
    cpu_spot = ["--spot"] if s.cpu_spot else []
    cmds = [
        # containerfilesystem: image streaming (--enable-image-streaming below) needs the Container File System API
        ["gcloud", "services", "enable", "container.googleapis.com", "artifactregistry.googleapis.com",
         "cloudbuild.googleapis.com", "iam.googleapis.com", "storage.googleapis.com",
         "containerfilesystem.googleapis.com", *p],
        # the bucket: inputs, every intermediate file and the results (no shared filesystem)
        ["gcloud", "storage", "buckets", "create", f"gs://{s.bucket}", *p, "--location", s.region,
         "--uniform-bucket-level-access"],
        ["gcloud", "artifacts", "repositories", "create", s.repository, *p, "--location", s.region,
         "--repository-format", "docker"],
        # nodes run as a least-privilege service account that may pull the image
        ["gcloud", "iam", "service-accounts", "create", "cellscale-nodes", *p, "--display-name",
         "cellscale GKE nodes"],
        ["gcloud", "projects", "add-iam-policy-binding", s.project, "--member", f"serviceAccount:{s.nodes_gsa}",
         "--role", "roles/container.defaultNodeServiceAccount", "--condition", "None"],
        ["gcloud", "artifacts", "repositories", "add-iam-policy-binding", s.repository, *p, "--location",
         s.region, "--member", f"serviceAccount:{s.nodes_gsa}", "--role", "roles/artifactregistry.reader"],
        # the cluster with its small on-demand system pool (kube-system, the policy; never a workflow pod)
        ["gcloud", "container", "clusters", "create", s.cluster, *p, *z, "--release-channel", "rapid",
         "--cluster-version", s.kubernetes_version, "--workload-pool", f"{s.project}.svc.id.goog",
         "--machine-type", s.system_machine_type, "--num-nodes", "1", "--disk-size", "50", *nodes_sa,
         "--enable-image-streaming", "--autoscaling-profile", "optimize-utilization"],
        # GPU pool: on-demand unless a plan says spot, from zero; GKE installs the driver and taints the nodes
        # nvidia.com/gpu (none when the plan runs everything on CPU nodes)
        *([["gcloud", "container", "node-pools", "create", "gpu", *common_pool, "--machine-type",
            s.gpu_machine_type, "--accelerator", accelerator, *gpu_spot, "--max-nodes", str(s.gpu_max_nodes)]]
          if s.gpu_max_nodes > 0 else []),
        # CPU pool (spot unless a plan says otherwise): its own machine type (the profile's only way to route
        # pods), untainted, from zero
        ["gcloud", "container", "node-pools", "create", s.cpu_pool, *common_pool, "--machine-type",
         s.spot_machine_type, *cpu_spot, "--max-nodes", str(s.spot_max_nodes)],
        ["gcloud", "container", "clusters", "get-credentials", s.cluster, *p, *z],
        # namespace, pods' service account, the job defaults policy
        ["kubectl", "apply", "--server-side", "-f", _shown(Path(profile_dir) / "manifests")],
        # Workload Identity: the pods' Kubernetes service account acts as a Google one that owns the bucket
        ["gcloud", "iam", "service-accounts", "create", "cellscale-runner", *p, "--display-name",
         "cellscale workflow pods"],
        ["gcloud", "storage", "buckets", "add-iam-policy-binding", f"gs://{s.bucket}", "--member",
         f"serviceAccount:{s.runner_gsa}", "--role", "roles/storage.objectAdmin"],
        ["gcloud", "iam", "service-accounts", "add-iam-policy-binding", s.runner_gsa, *p, "--role",
         "roles/iam.workloadIdentityUser", "--member",
         f"serviceAccount:{s.project}.svc.id.goog[{s.namespace}/{s.service_account}]"],
        ["kubectl", "annotate", "serviceaccount", s.service_account, "--namespace", s.namespace, "--overwrite",
         f"iam.gke.io/gcp-service-account={s.runner_gsa}"],
    ]
    if build_image:  # Cloud Build: no local Docker needed
        cmds.append(["gcloud", "builds", "submit", *p, "--region", s.region, "--tag", s.image, "."])
    for folder in upload:  # model weights and input images reach pods as inputs from the bucket
        cmds.append(["gcloud", "storage", "rsync", "--recursive", folder,
                     f"gs://{s.bucket}/{s.prefix}/{folder}".rstrip("/")])
    return cmds


def _shown(path: Path) -> str:
    """A path as the commands show it: relative to the current folder (where they run) when inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(Path(path).resolve())


def down_commands(s: Settings, delete_bucket: bool = False) -> list[list[str]]:
    """Everything ``up`` made that costs money when idle (the bucket only with ``delete_bucket``)."""
    p, q = ["--project", s.project], ["--quiet"]
    cmds = [
        ["gcloud", "container", "clusters", "delete", s.cluster, *p, "--zone", s.zone, *q],
        ["gcloud", "artifacts", "repositories", "delete", s.repository, *p, "--location", s.region, *q],
        ["gcloud", "iam", "service-accounts", "delete", s.runner_gsa, *p, *q],
        ["gcloud", "iam", "service-accounts", "delete", s.nodes_gsa, *p, *q],
    ]
    if delete_bucket:
        cmds.append(["gcloud", "storage", "rm", "--recursive", f"gs://{s.bucket}"])
    return cmds


def format_commands(cmds: list[list[str]]) -> str:
    return "\n".join(shlex.join(c) for c in cmds) + "\n"


# flags of a creation or deletion that its `describe` needs to find the same object
_SCOPE_FLAGS = ("--project", "--zone", "--region", "--location", "--cluster")


def exists_probe(cmd: list[str]) -> list[str] | None:
    """The ``gcloud ... describe`` that finds what a ``gcloud ... create`` or ``delete`` (or ``gcloud storage rm``
    of a bucket) acts on, so that ``up`` and ``down`` can be rerun: a creation of what exists and a deletion of
    what is gone are skipped instead of failing. None for every other command."""
    if cmd[:3] == ["gcloud", "storage", "rm"]:
        bucket = next(a for a in cmd if a.startswith("gs://"))
        return ["gcloud", "storage", "buckets", "describe", bucket.rstrip("/"), "--format", "value(name)"]
    if cmd[0] != "gcloud" or not ({"create", "delete"} & set(cmd)):
        return None
    verb = cmd.index("create") if "create" in cmd else cmd.index("delete")
    name = cmd[verb + 1]
    scope = [arg for i, flag in enumerate(cmd[:-1]) if flag in _SCOPE_FLAGS for arg in (flag, cmd[i + 1])]
    if cmd[1:verb] == ["storage", "buckets"]:  # a bucket is found by its name alone (its --location is no scope)
        scope = scope[scope.index("--project"):][:2] if "--project" in scope else []
    if cmd[1:verb] == ["iam", "service-accounts"] and "@" not in name:  # created by its short name
        name = f"{name}@{scope[scope.index('--project') + 1]}.iam.gserviceaccount.com"
    fmt = "value(config.machineType)" if cmd[1:verb] == ["container", "node-pools"] else "value(name)"
    return ["gcloud", *cmd[1:verb], "describe", name, *scope, "--format", fmt]


def _skip(cmd: list[str], cwd: Path | None) -> tuple[bool, str | None]:
    """Whether ``cmd`` has nothing to do (it creates what exists or deletes what is gone), and why not to run it
    at all (an existing node pool of another machine type: it is not changed in place)."""
    probe = exists_probe(cmd)
    if probe is None:
        return False, None
    found = subprocess.run(probe, cwd=cwd, check=False, capture_output=True, text=True)
    exists = found.returncode == 0
    if "delete" in cmd or cmd[:3] == ["gcloud", "storage", "rm"]:
        return not exists, None
    if exists and cmd[1:3] == ["container", "node-pools"]:
        have, want = found.stdout.strip(), cmd[cmd.index("--machine-type") + 1]
        if have and have != want:
            pool = cmd[cmd.index("create") + 1]
            delete = ["gcloud", "container", "node-pools", "delete", *probe[4:probe.index("--format")]]
            return True, (f"node pool {pool} exists with machine type {have}, the profile (or plan) asks for "
                          f"{want}; a pool's machine type cannot change: delete it ({shlex.join(delete)}) and rerun")
    return exists, None


def run_commands(cmds: list[list[str]], dry_run: bool, cwd: Path | None = None) -> int:
    """Print and (unless ``dry_run``) run each command in ``cwd`` (default: the current folder); stop at a failure.
    A creation of what already exists and a deletion of what is gone are skipped (:func:`exists_probe`), so a
    second ``up`` (after a failure, or to rebuild the image) and a second ``down`` go on where the first stopped."""
    for cmd in cmds:
        print("+ " + shlex.join(cmd), flush=True)
        if dry_run:
            continue
        skip, refusal = _skip(cmd, cwd)
        if refusal:
            print(f"cellscale gke: {refusal}", file=sys.stderr)
            return 1
        if skip:
            print("  (exists)" if "create" in cmd else "  (already gone)", flush=True)
            continue
        result = subprocess.run(cmd, cwd=cwd, check=False)
        if result.returncode != 0:
            print(f"cellscale gke: command failed with exit code {result.returncode}", file=sys.stderr)
            return result.returncode
    return 0


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="cellscale gke", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile-dir", type=Path, default=PROFILE_DIR,
                        help=f"the GKE profile folder (default: {PROFILE_DIR} in the current folder)")
    parser.add_argument("--profile", type=Path, dest="profile_dir", default=PROFILE_DIR,  # the older spelling
                        help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="action", required=True)
    up = sub.add_parser("up", help="create the bucket, image repository, cluster, node pools and Workload Identity")
    up.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    up.add_argument("--no-image", action="store_true", help="skip building the image with Cloud Build")
    up.add_argument("--no-upload", action="store_true", help="skip uploading models/ and data/demo/")
    up.add_argument("--plan", type=Path, metavar="DIR|plan.json",
                    help="node pools from `cellscale plan --out DIR` (machine types, spot, autoscaling maxima)")
    up.add_argument("--no-profile-link", action="store_true",
                    help="do not link the profile into Snakemake's configuration folder")
    link = sub.add_parser("install-profile", help="link the profile where Snakemake looks, so that "
                          "`snakemake --profile gke` works from any folder")
    link.add_argument("--force", action="store_true", help="replace whatever is there")
    link.add_argument("--dest", type=Path, help="the folder to link it in (default: Snakemake's user "
                      "configuration folder, ~/.config/snakemake on Linux)")
    down = sub.add_parser("down", help="delete the cluster, repository and service accounts")
    down.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    down.add_argument("--delete-bucket", action="store_true", help="also delete the bucket and all results")
    printed = sub.add_parser("print", help="print the commands of `up` (same as up --dry-run)")
    printed.add_argument("--plan", type=Path, metavar="DIR|plan.json", help="as for up")
    size = sub.add_parser("size", help="mem_mb per rule from benchmark files (same as cellscale size --profile gke)")
    sizing.build_parser(size, profile="gke")
    return parser


def run(args: argparse.Namespace) -> int:
    """Carry out parsed ``cellscale gke`` arguments (see :func:`build_parser`)."""
    if args.action == "size":
        return sizing.run(args)
    try:
        s = settings(check_profile_dir(args.profile_dir))
    except FileNotFoundError as err:
        raise SystemExit(f"cellscale gke: {err}") from None
    if args.action == "install-profile":
        target = install_profile(args.profile_dir, home=args.dest, force=args.force)
        print(f"{target} -> {target.resolve()}: `snakemake --profile gke` now uses it")
        return 0
    if getattr(args, "plan", None):
        plan = read_plan(args.plan)
        try:
            s = with_plan(s, plan, str(plan_file(args.plan)))
        except ValueError as err:
            raise SystemExit(f"cellscale gke: {err}") from None
        priced = (plan.get("prices") or {}).get("region")
        if priced and priced != s.region:   # machine types and prices differ by region: said, not refused
            print(f"cellscale gke: warning: {plan_file(args.plan)} was priced for {priced}, the cluster goes to "
                  f"{s.region} (CELLSCALE_REGION): its machine types may be missing there and its prices differ; "
                  f"plan again with a price table of {s.region} (cellscale plan --prices)", file=sys.stderr)
    if args.action == "print":
        sys.stdout.write(format_commands(up_commands(s, args.profile_dir)))
        return 0
    if args.action == "up":
        cmds = up_commands(s, args.profile_dir, build_image=not args.no_image,
                           upload=() if args.no_upload else ("models", "data/demo"))
    else:
        cmds = down_commands(s, delete_bucket=args.delete_bucket)
    if not args.dry_run and s.project == "your-gcp-project":
        raise SystemExit("set CELLSCALE_GCP_PROJECT to your Google Cloud project id first")
    if args.action == "up" and not args.dry_run:  # what `up` builds and uploads comes from the current folder
        needed = ([] if args.no_image else ["Dockerfile"]) + ([] if args.no_upload else ["models", "data/demo"])
        missing = [name for name in needed if not Path(name).exists()]
        if missing:
            raise SystemExit(f"cellscale gke up: no {', '.join(missing)} in {Path.cwd()}: run it from the "
                             "workflow's checkout (or pass --no-image / --no-upload)")
    status = run_commands(cmds, args.dry_run)
    if status == 0 and args.action == "up" and not args.no_profile_link:
        target = snakemake_profile_home() / "gke"
        print(f"link {target} -> {Path(args.profile_dir).resolve()} (snakemake --profile gke)", flush=True)
        if not args.dry_run:
            install_profile(args.profile_dir, home=target.parent)
    return status


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
