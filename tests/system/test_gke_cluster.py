"""Cluster set-up as code (`cellscale gke`): the commands it would run and the manifests it applies."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib

import kubernetes_validate
import pytest
import yaml
from support import ROOT

from cellscale.deploy import gke, sizing

GKE_KUBERNETES = "1.36.0"  # the cluster version `up` asks for (MutatingAdmissionPolicy is GA from 1.36)
ENV = {"CELLSCALE_GCP_PROJECT": "demo-project", "CELLSCALE_ZONE": "us-central1-b", "PATH": "/usr/bin:/bin"}
PROFILE = ROOT / "profiles" / "gke"


def cli(*args: str, env: dict | None = None, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cellscale.deploy.gke", *args], check=False, capture_output=True,
                          text=True, env={**ENV, "PYTHONPATH": str(ROOT / "src"), **(env or {})}, cwd=cwd, timeout=60)


@pytest.fixture(scope="module")
def up_lines():
    result = cli("up", "--dry-run")
    assert result.returncode == 0, result.stderr
    lines = [line[2:] for line in result.stdout.splitlines() if line.startswith("+ ")]
    assert cli("print").stdout.splitlines() == lines  # print = up --dry-run
    return [shlex.split(line) for line in lines]


def find(cmds, *words):
    hits = [c for c in cmds if all(w in c for w in words)]
    assert len(hits) == 1, (words, hits)
    return hits[0]


def flag(cmd, name):
    return cmd[cmd.index(name) + 1]


def test_dry_run_runs_nothing(tmp_path):
    # neither gcloud nor kubectl on PATH: a dry run must not need them
    result = cli("up", "--dry-run", env={"PATH": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert cli("down", "--dry-run", env={"PATH": str(tmp_path)}).returncode == 0


def test_refuses_to_run_without_a_project():
    result = cli("up", env={"CELLSCALE_GCP_PROJECT": ""})
    assert result.returncode != 0 and "CELLSCALE_GCP_PROJECT" in result.stderr


def test_up_commands(up_lines):
    cmds = up_lines
    assert all(c[0] in ("gcloud", "kubectl") for c in cmds)
    assert all(flag(c, "--project") == "demo-project" for c in cmds if c[0] == "gcloud" and "--project" in c)
    find(cmds, "buckets", "create", "gs://demo-project-cellscale")
    cluster = find(cmds, "clusters", "create")
    assert flag(cluster, "--zone") == "us-central1-b"
    assert flag(cluster, "--workload-pool") == "demo-project.svc.id.goog"
    assert flag(cluster, "--cluster-version") == "1.36"
    assert flag(cluster, "--num-nodes") == "1"          # the small on-demand system pool
    system_type = flag(cluster, "--machine-type")

    profile = gke.load_profile(PROFILE, environ=ENV)
    gpu = find(cmds, "node-pools", "create", "gpu")
    assert flag(gpu, "--machine-type") == profile["set-resources"]["segment"]["machine_type"]
    assert flag(gpu, "--accelerator") == "type=nvidia-l4,count=1,gpu-driver-version=default"
    assert flag(gpu, "--min-nodes") == "0" and "--enable-autoscaling" in gpu and "--spot" not in gpu
    spot = find(cmds, "node-pools", "create", "spot-cpu")
    assert flag(spot, "--machine-type") == profile["default-resources"]["machine_type"]
    assert flag(spot, "--min-nodes") == "0" and "--spot" in spot and "--node-taints" not in spot
    # the spot pool's machine type is its own: the profile routes CPU pods by machine type only
    assert len({system_type, flag(gpu, "--machine-type"), flag(spot, "--machine-type")}) == 3

    wi = find(cmds, "roles/iam.workloadIdentityUser")
    assert flag(wi, "--member") == "serviceAccount:demo-project.svc.id.goog[cellscale/cellscale-runner]"
    assert flag(find(cmds, "buckets", "add-iam-policy-binding"), "--role") == "roles/storage.objectAdmin"
    annotate = find(cmds, "kubectl", "annotate")
    assert "iam.gke.io/gcp-service-account=cellscale-runner@demo-project.iam.gserviceaccount.com" in annotate
    apply = find(cmds, "kubectl", "apply")
    # order: credentials before kubectl, manifests (namespace, service account) before the annotation
    order = [cmds.index(c) for c in (find(cmds, "get-credentials"), apply, annotate)]
    assert order == sorted(order)
    build = find(cmds, "builds", "submit")
    assert flag(build, "--tag") == "us-central1-docker.pkg.dev/demo-project/cellscale/cellscale:0.1.0"
    assert [c[-1] for c in cmds if c[:3] == ["gcloud", "storage", "rsync"]] == \
        ["gs://demo-project-cellscale/cellscale/models", "gs://demo-project-cellscale/cellscale/data/demo"]


def test_down_commands():
    result = cli("down", "--dry-run", "--delete-bucket")
    cmds = [shlex.split(line[2:]) for line in result.stdout.splitlines() if line.startswith("+ ")]
    assert find(cmds, "clusters", "delete")[-1] == "--quiet"
    find(cmds, "storage", "rm", "gs://demo-project-cellscale")
    kept = cli("down", "--dry-run").stdout
    assert "gs://demo-project-cellscale" not in kept  # results survive unless asked


def _fake_cloud(tmp_path, exists: bool, cpu_pool_type: str = "e2-standard-4"):
    """gcloud and kubectl stand-ins on PATH that log their arguments: every `describe` finds its object (or none),
    a `create` of what exists fails as gcloud's does, everything else succeeds."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    found = "exit 0" if exists else "echo 'ERROR: NOT_FOUND' >&2; exit 1"
    script = f"""#!/bin/sh
echo "$(basename "$0") $*" >> {log}
case "$*" in
  *"node-pools describe gpu "*) {"echo g2-standard-4; exit 0" if exists else found};;
  *"node-pools describe "*) {f"echo {cpu_pool_type}; exit 0" if exists else found};;
  *" describe "*) {found};;
  *" create "*) {"echo 'ERROR: ALREADY_EXISTS: already exists' >&2; exit 1" if exists else "exit 0"};;
  *" delete "*|*"storage rm "*) {"exit 0" if exists else "echo 'ERROR: NOT_FOUND' >&2; exit 1"};;
esac
exit 0
"""
    for name in ("gcloud", "kubectl"):
        (bin_dir / name).write_text(script)
        (bin_dir / name).chmod(0o755)
    return {"PATH": f"{bin_dir}:/usr/bin:/bin"}, log


def _ran(log) -> list[list[str]]:
    return [shlex.split(line) for line in log.read_text().splitlines()]


def test_up_can_be_rerun(tmp_path):
    """A second `up` (after a failure half-way, or to rebuild the image) skips what exists and does the rest."""
    env, log = _fake_cloud(tmp_path, exists=True)
    result = cli("up", "--no-upload", "--no-profile-link", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    ran = _ran(log)
    assert not [c for c in ran if "create" in c], "nothing that exists is created again"
    assert {c[2] for c in ran if "describe" in c} >= {"buckets", "repositories", "service-accounts", "clusters",
                                                      "node-pools"}
    assert ["kubectl", "apply"] == find(ran, "kubectl", "apply")[:2] and find(ran, "kubectl", "annotate")
    assert find(ran, "builds", "submit") and result.stdout.count("(exists)") == 7
    # what exists is found where the creation would have put it (a bucket by name: --location is not its scope)
    bucket = find(ran, "buckets", "describe")
    assert bucket[4] == "gs://demo-project-cellscale" and "--location" not in bucket
    assert find(ran, "service-accounts", "describe", "cellscale-runner@demo-project.iam.gserviceaccount.com")
    assert flag(find(ran, "node-pools", "describe", "spot-cpu"), "--cluster") == "cellscale"


def test_up_refuses_a_node_pool_of_another_machine_type(tmp_path):
    """Editing the profile's machine type cannot change an existing pool: `up` says to delete it, creates nothing."""
    env, log = _fake_cloud(tmp_path, exists=True, cpu_pool_type="n2-standard-8")
    result = cli("up", "--no-image", "--no-upload", "--no-profile-link", env=env)
    assert result.returncode != 0
    assert "spot-cpu exists with machine type n2-standard-8" in result.stderr and "e2-standard-4" in result.stderr
    assert "gcloud container node-pools delete spot-cpu --project demo-project --zone us-central1-b --cluster " \
        "cellscale" in result.stderr
    assert not [c for c in _ran(log) if "create" in c or "kubectl" in c[0]]


def test_first_up_creates_everything(tmp_path):
    env, log = _fake_cloud(tmp_path, exists=False)
    result = cli("up", "--no-image", "--no-upload", "--no-profile-link", env=env)
    assert result.returncode == 0, result.stderr
    created = [c for c in _ran(log) if "create" in c]
    assert len(created) == 7 and "(exists)" not in result.stdout


def test_down_can_be_rerun(tmp_path):
    """A second `down` (the cluster already gone) still deletes the repository, accounts and bucket."""
    env, log = _fake_cloud(tmp_path, exists=False)
    result = cli("down", "--delete-bucket", env=env)
    assert result.returncode == 0, result.stderr
    assert not [c for c in _ran(log) if "delete" in c or c[1:3] == ["storage", "rm"]]
    assert result.stdout.count("(already gone)") == 5


def test_image_streaming_has_its_api_enabled(up_lines):
    """GKE's image streaming needs the Container File System API, enabled before the cluster is created."""
    cluster = find(up_lines, "clusters", "create")
    enable = find(up_lines, "services", "enable")
    assert "--enable-image-streaming" in cluster and "containerfilesystem.googleapis.com" in enable
    assert up_lines.index(enable) < up_lines.index(cluster)


def _dockerfile_copies() -> set[str]:
    """The checkout paths the Dockerfile COPYs (the last word of each COPY is its destination)."""
    sources = set()
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        words = line.split()
        if words[:1] == ["COPY"]:
            sources |= {w for w in words[1:-1] if not w.startswith("--")}
    return sources


@pytest.mark.parametrize("ignore_file, exclude_all", [(".gcloudignore", "/*"), (".dockerignore", "*")])
def test_image_build_context_is_what_the_dockerfile_copies(ignore_file, exclude_all):
    """`up`'s `gcloud builds submit .` (and `docker build .`) upload the checkout's folder: only the Dockerfile and
    what it COPYs may go, not image folders beside the sample sheet, .venv or results/."""
    copied = _dockerfile_copies()
    assert copied and all((ROOT / path).exists() for path in copied), copied
    lines = [line for line in (ROOT / ignore_file).read_text().splitlines() if line and not line.startswith("#")]
    assert lines[0] == exclude_all   # everything at the top level is left out ...
    kept = {line.lstrip("!/") for line in lines if line.startswith("!")}
    assert kept == copied | {"Dockerfile"}   # ... but the Dockerfile and what it copies
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    installed = set(re.findall(r'"\.\[([^\]]+)\]"', (ROOT / "Dockerfile").read_text()))
    assert installed and {e for group in installed for e in group.split(",")} <= extras


@pytest.mark.parametrize("path", gke.manifest_files(PROFILE), ids=lambda p: p.name)
def test_manifests_validate_against_the_gke_api(path):
    for doc in yaml.safe_load_all(path.read_text()):
        kubernetes_validate.validate(doc, GKE_KUBERNETES, strict=True)


def test_job_policy_needs_kubernetes_1_36():
    policy = next(d for d in gke.manifests(PROFILE) if d["kind"] == "MutatingAdmissionPolicy")
    with pytest.raises(kubernetes_validate.utils.SchemaNotFoundError):  # only v1beta1 before 1.36
        kubernetes_validate.validate(policy, "1.35.0", strict=True)


def test_validation_catches_a_broken_manifest():
    ns = next(d for d in gke.manifests(PROFILE) if d["kind"] == "Namespace")
    broken = {**ns, "spec": {"finalizers": "kubernetes"}}  # a string where a list belongs
    with pytest.raises(kubernetes_validate.utils.ValidationError):
        kubernetes_validate.validate(broken, GKE_KUBERNETES, strict=True)


def test_namespace_refuses_privileged_pods():
    ns = next(d for d in gke.manifests(PROFILE) if d["kind"] == "Namespace")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] in ("baseline", "restricted")


def test_allocatable_follows_gke_reservations():
    cpu, mem, gpus = gke.allocatable("e2-standard-4")
    assert 3.4 < cpu < 3.6 and 13000 < mem < 14000 and gpus == 0
    assert gke.allocatable("g2-standard-4")[2] == 1
    with pytest.raises(ValueError):
        gke.allocatable("a3-megagpu-8g")


def test_size_from_benchmark_files(tmp_path):
    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    for rel, rss in [("segment/a/shard_0000.tsv", 1969.45), ("segment/b/shard_0000.tsv", 1200.0),
                     ("measure/a.tsv", 226.2), ("summary/run.tsv", 90.0)]:
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(header + f"6.6\t0:00:06\t{rss}\t1\t1\t1\t0\t0\t50\t5\n")
    sizes = sizing.size_for("gke", tmp_path)
    assert sizes["segment"].mem_mb == 3000 and sizes["segment"].files == 2
    assert sizes["measure"].mem_mb == 500 and sizes["summary"].mem_mb == 500
    out = yaml.safe_load(cli("size", str(tmp_path)).stdout)["set-resources"]
    own = yaml.safe_load((ROOT / "profiles/gke/config.yaml").read_text())["set-resources"]
    assert out == {**own, "measure": {**own["measure"], "mem_mb": 500}, "segment": {**own["segment"], "mem_mb": 3000},
                   "summary": {**own["summary"], "mem_mb": 500}}   # the profile's block, the measured rules resized
    elsewhere = cli("size", str(tmp_path), cwd=tmp_path).stdout   # no profiles/gke here: only what was measured
    assert "merge these into your profile's set-resources" in elsewhere
    assert yaml.safe_load(elsewhere)["set-resources"] == {"measure": {"mem_mb": 500}, "segment": {"mem_mb": 3000},
                                                          "summary": {"mem_mb": 500}}


def test_runs_from_another_folder_with_profile_dir(tmp_path, up_lines):
    """The library reads no file of its own checkout: the profile is where --profile-dir says."""
    missing = cli("print", cwd=tmp_path)
    assert missing.returncode != 0 and str(tmp_path / "profiles" / "gke") in missing.stderr
    assert "--profile-dir" in missing.stderr and "Traceback" not in missing.stderr
    result = cli("--profile-dir", str(PROFILE), "up", "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    cmds = [shlex.split(line[2:]) for line in result.stdout.splitlines() if line.startswith("+ ")]
    assert cli("--profile-dir", str(PROFILE), "print", cwd=tmp_path).stdout.splitlines() == \
        [shlex.join(c) for c in cmds]
    # the same commands, but the manifests (outside the current folder) by their full path
    apply = find(cmds, "kubectl", "apply")
    assert apply[-1] == str(PROFILE / "manifests") and find(up_lines, "kubectl", "apply")[-1] == "profiles/gke/manifests"
    assert [c for c in cmds if c is not apply] == [c for c in up_lines if "apply" not in c]
    # the older spelling of the option
    assert cli("--profile", str(PROFILE), "print", cwd=tmp_path).stdout == cli("print").stdout.replace(
        "profiles/gke/manifests", str(PROFILE / "manifests"))


def test_up_refuses_to_run_outside_a_checkout(tmp_path):
    (tmp_path / "profiles").mkdir()
    shutil.copytree(PROFILE, tmp_path / "profiles" / "gke")
    result = cli("up", cwd=tmp_path, env={"PATH": str(tmp_path)})  # neither gcloud nor kubectl: nothing may run
    assert result.returncode != 0 and "Dockerfile, models, data/demo" in result.stderr


def test_install_profile_makes_the_bare_name_work(tmp_path):
    """`snakemake --profile gke`, as users type it, finds the checkout's profile once it is installed."""
    env = {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "config")}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    lookup = ("from snakemake.cli import get_profile_dir, parse_args; print(get_profile_dir('gke')[1]); "
              "print(parse_args(['--profile', 'gke', '--dry-run'])[1].executor)")

    def snakemake_lookup():
        return subprocess.run([sys.executable, "-c", lookup], capture_output=True, text=True, cwd=elsewhere,
                              env={**ENV, **env}, timeout=120)

    assert snakemake_lookup().returncode != 0   # not found before
    result = cli("install-profile", env=env, cwd=elsewhere.parent)
    assert result.returncode != 0 and "--profile-dir" in result.stderr   # no profiles/gke in that folder
    result = cli("install-profile", env=env)
    assert result.returncode == 0, result.stderr
    link = tmp_path / "config" / "snakemake" / "gke"
    assert link.is_symlink() and link.resolve() == PROFILE.resolve()
    found = snakemake_lookup()
    assert found.returncode == 0, found.stderr
    config, executor = found.stdout.split()
    assert config == str(link / "config.yaml") and executor == "kubernetes"
    assert cli("install-profile", env=env).returncode == 0   # again: the link is replaced
    link.unlink()
    link.mkdir()   # a folder cellscale did not make is left alone
    refused = cli("install-profile", env=env)
    assert refused.returncode != 0 and "--force" in refused.stderr and link.is_dir() and not link.is_symlink()
    assert cli("install-profile", "--force", env=env).returncode == 0 and link.is_symlink()


def _pool(cmds, name):
    return next((c for c in cmds if c[:4] == ["gcloud", "container", "node-pools", "create"] and c[4] == name), None)


def test_up_takes_the_pools_of_a_plan(tmp_path):
    plan = {"pools": [{"name": "gpu", "machine_type": "a2-highgpu-1g", "count": 6, "spot": True, "gpu": "A100-40GB",
                       "gpus_per_node": 1},
                      {"name": "cpu", "machine_type": "n2-standard-8", "count": 3, "spot": False}]}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    result = cli("print", "--plan", str(tmp_path))
    assert result.returncode == 0, result.stderr
    cmds = [shlex.split(line) for line in result.stdout.splitlines()]
    gpu, cpu = _pool(cmds, "gpu"), _pool(cmds, "cpu")
    assert gpu[gpu.index("--machine-type") + 1] == "a2-highgpu-1g" and gpu[gpu.index("--max-nodes") + 1] == "6"
    assert "--spot" in gpu and "type=nvidia-tesla-a100" in gpu[gpu.index("--accelerator") + 1]
    assert cpu[cpu.index("--machine-type") + 1] == "n2-standard-8" and cpu[cpu.index("--max-nodes") + 1] == "3"
    assert "--spot" not in cpu and _pool(cmds, "spot-cpu") is None
    # a plan that runs everything on CPU nodes creates no GPU pool
    plan["pools"] = [{"name": "spot-cpu", "machine_type": "n2-standard-16", "count": 12, "spot": True}]
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    cmds = [shlex.split(line[2:]) for line in cli("up", "--dry-run", "--plan", str(tmp_path / "plan.json"))
            .stdout.splitlines() if line.startswith("+ ")]
    assert _pool(cmds, "gpu") is None and "--spot" in _pool(cmds, "spot-cpu")
    # a plan priced for another region than the cluster's: said (machine types and prices differ by region)
    plan["prices"] = {"table": "gke-us-central1", "region": "us-central1"}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    assert "warning" not in cli("print", "--plan", str(tmp_path)).stderr
    elsewhere = cli("print", "--plan", str(tmp_path), env={"CELLSCALE_REGION": "europe-west4"})
    assert elsewhere.returncode == 0 and "priced for us-central1, the cluster goes to europe-west4" in elsewhere.stderr
    # what is wrong with a plan is said, with its file
    plan["pools"][0]["machine_type"] = "x9-giant"
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    bad = cli("print", "--plan", str(tmp_path))
    assert bad.returncode != 0 and "x9-giant" in bad.stderr and "plan" in bad.stderr and "Traceback" not in bad.stderr
    missing = cli("print", "--plan", str(tmp_path / "nope"))
    assert missing.returncode != 0 and "cellscale plan" in missing.stderr
