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
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import math
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from cellscale.deploy import sizing

PROFILE_DIR = Path("profiles/gke")   # relative to the current folder: the user's workflow checkout
GPU_RULE = "segment"
# vCPUs, memory (GiB) and GPUs of the machine types the profile may name; GPUs come with g2 (L4) only,
# an n1 type gets a T4 through --accelerator.
MACHINES = {
    "e2-medium": (2, 4, 0), "e2-standard-2": (2, 8, 0), "e2-standard-4": (4, 16, 0),
    "e2-standard-8": (8, 32, 0), "e2-highmem-4": (4, 32, 0), "n2-standard-4": (4, 16, 0),
    "n2d-standard-4": (4, 16, 0), "n1-standard-4": (4, 15, 0), "n1-standard-8": (8, 30, 0),
    "g2-standard-4": (4, 16, 1), "g2-standard-8": (8, 32, 1),
}
# What GKE's own DaemonSets (kube-proxy, logging, metrics, CSI, GPU device plugin) take from every node.
DAEMON_CPU, DAEMON_MEMORY_MB = 0.4, 800


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
    cpu_reserved = sum(share for share, present in
                       ((0.06, cpus >= 1), (0.01, cpus >= 2), (0.005, cpus >= 3), (0.005, cpus >= 4))
                       if present) + 0.0025 * max(0, cpus - 4)
    mem_mib = gib * 1024
    reserved_mib = 100.0
    for size_gib, share in ((4, 0.25), (4, 0.20), (8, 0.10), (112, 0.06), (math.inf, 0.02)):
        part = min(mem_mib, size_gib * 1024)
        reserved_mib += part * share
        mem_mib -= part
        if mem_mib <= 0:
            break
    memory_mb = (gib * 1024 - reserved_mib) * 1.048576
    return round(cpus - cpu_reserved - DAEMON_CPU, 2), round(memory_mb - DAEMON_MEMORY_MB), gpus


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
    gpu_max_nodes: int = 4
    spot_max_nodes: int = 20
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

    def pools(self) -> list[Pool]:
        """The node pools as the scheduler sees them: system (on-demand), GPU (on-demand, tainted), spot CPU."""
        def pool(name, machine, spot=False, taints=()):
            cpu, mem, gpus = allocatable(machine)
            return Pool(name, machine, cpu, mem, gpus, spot, taints)
        return [pool("default-pool", self.system_machine_type),
                pool("gpu", self.gpu_machine_type, taints=(("nvidia.com/gpu", "present", "NoSchedule"),)),
                pool("spot-cpu", self.spot_machine_type, spot=True)]


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
    cmds = [
        ["gcloud", "services", "enable", "container.googleapis.com", "artifactregistry.googleapis.com",
         "cloudbuild.googleapis.com", "iam.googleapis.com", "storage.googleapis.com", *p],
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
        # GPU pool: on-demand, from zero; GKE installs the driver and taints the nodes nvidia.com/gpu
        ["gcloud", "container", "node-pools", "create", "gpu", *common_pool, "--machine-type",
         s.gpu_machine_type, "--accelerator", accelerator, "--max-nodes", str(s.gpu_max_nodes)],
        # spot CPU pool: its own machine type (the profile's only way to route pods), untainted, from zero
        ["gcloud", "container", "node-pools", "create", "spot-cpu", *common_pool, "--machine-type",
         s.spot_machine_type, "--spot", "--max-nodes", str(s.spot_max_nodes)],
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


def run_commands(cmds: list[list[str]], dry_run: bool, cwd: Path | None = None) -> int:
    """Print and (unless ``dry_run``) run each command in ``cwd`` (default: the current folder); stop at a failure."""
    for cmd in cmds:
        print("+ " + shlex.join(cmd), flush=True)
        if not dry_run:
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
    down = sub.add_parser("down", help="delete the cluster, repository and service accounts")
    down.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    down.add_argument("--delete-bucket", action="store_true", help="also delete the bucket and all results")
    sub.add_parser("print", help="print the commands of `up` (same as up --dry-run)")
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
    return run_commands(cmds, args.dry_run)


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
