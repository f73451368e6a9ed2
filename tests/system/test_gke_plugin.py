"""What profiles/gke relies on in the pinned snakemake-executor-plugin-kubernetes, checked on the installed code.

Each DESIGN.md fact about the plugin is exercised by driving the plugin's own job-building and status code with a
recording stand-in for the Kubernetes client (no cluster), then the profile is checked against each fact.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import threading
from importlib.metadata import version
from pathlib import Path
from types import SimpleNamespace

import kubernetes  # the `gke` extra
import pytest
import snakemake_executor_plugin_kubernetes as plugin
from support import ROOT
from support.kube_emulator import api_errors

from cellscale.deploy import gke

PROFILE = ROOT / "profiles" / "gke"
PINNED = {"snakemake-executor-plugin-kubernetes": "0.5.0", "snakemake-storage-plugin-gcs": "1.1.4",
          "snakemake-storage-plugin-fs": "1.1.3", "snakemake": "9.27.1"}


class _Recorder:
    """Stands in for BatchV1Api / CoreV1Api: records calls, answers what the test scripted."""

    def __init__(self, **answers):
        self.calls: list[tuple[str, tuple, dict]] = []
        self.answers = answers

    def __getattr__(self, name):
        def call(*args, **kwargs):
            self.calls.append((name, args, kwargs))
            answer = self.answers.get(name)
            return answer(*args, **kwargs) if callable(answer) else answer
        return call


def _executor(privileged=False, tmp_path: Path | None = None):
    """The plugin's Executor without its __init__ (which wants a cluster): only what run_job reads."""
    ex = plugin.Executor.__new__(plugin.Executor)
    ex.k8s_cpu_scalar = 0.95
    ex.k8s_service_account_name = "cellscale-runner"
    ex.namespace = "cellscale"
    ex.run_namespace = "run"
    ex.secret_envvars = {}
    ex.container_image = "cellscale:test"
    ex.privileged = privileged
    ex.persistent_volumes = []
    ex.logger = logging.getLogger("k8s-test")
    ex.lock = threading.Lock()
    ex.batchapi, ex.kubeapi = _Recorder(), _Recorder()
    ex.submitted, ex.errors = [], []
    ex.format_job_exec = lambda job: "python -m snakemake --target-jobs x"
    ex.report_job_submission = ex.submitted.append
    ex.report_job_error = lambda job, msg=None, **kw: ex.errors.append((job, msg))
    ex.report_job_success = lambda job: None
    ex.workflow = SimpleNamespace(deployment_settings=SimpleNamespace(deployment_method=set()),
                                  executor_settings=SimpleNamespace(omit_job_cleanup=True))
    ex.log_path = tmp_path
    return ex


def build_job(resources: dict, privileged=False) -> dict:
    """The Job the plugin submits for a job with these resources, as it goes over the wire."""
    ex = _executor(privileged)
    job = SimpleNamespace(resources=dict(resources), jobid=1, attempt=1, is_containerized=False)
    ex.run_job(job)
    name, args, _ = ex.batchapi.calls[-1]
    assert name == "create_namespaced_job" and args[0] == "cellscale"
    return kubernetes.client.ApiClient().sanitize_for_serialization(args[1])


def container(job: dict) -> dict:
    return job["spec"]["template"]["spec"]["containers"][0]


def test_pinned_versions_are_installed():
    for dist, pinned in PINNED.items():
        assert version(dist) == pinned, f"{dist} {version(dist)} installed; profiles/gke was verified on {pinned}"


def test_resources_the_plugin_reads():
    job = build_job({"_cores": 2, "mem_mb": 3000, "disk_mb": 5000, "machine_type": "e2-standard-4",
                     "runtime": 60, "slurm_partition": "gpu", "tmpdir": "/tmp"})
    spec = job["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == {"node.kubernetes.io/instance-type": "e2-standard-4"}
    assert container(job)["resources"] == {"requests": {"cpu": "1900m", "memory": "3000M",
                                                        "ephemeral-storage": "5000M"}}
    assert spec["serviceAccountName"] == "cellscale-runner" and spec["restartPolicy"] == "Never"
    assert job["spec"]["backoffLimit"] == 0  # retries are Snakemake's, not the Job's
    assert "activeDeadlineSeconds" not in job["spec"]  # nothing stops a pod that stays Pending
    assert "annotations" not in (job["spec"]["template"].get("metadata") or {})


def test_gpu_needs_scale_zero_for_limits():
    gpu = {"_cores": 2, "mem_mb": 8000, "gpu": 1, "gpu_manufacturer": "nvidia", "machine_type": "g2-standard-4"}
    scaled = build_job(gpu)
    assert "limits" not in container(scaled)["resources"]
    assert api_errors(scaled), "the API server refuses nvidia.com/gpu without a limit"
    fixed = build_job({**gpu, "scale": 0})
    res = container(fixed)["resources"]
    assert res["limits"]["nvidia.com/gpu"] == res["requests"]["nvidia.com/gpu"] == "1"
    assert res["limits"]["memory"] == "8000M" and res["limits"]["cpu"] == "2000m"
    assert api_errors(fixed) == []
    assert {"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"} \
        in fixed["spec"]["template"]["spec"]["tolerations"]
    with pytest.raises(Exception, match="manufacturer"):
        build_job({"_cores": 1, "gpu": 1})


def test_gpu_zero_still_asks_for_a_gpu():
    """Why the profile never puts gpu in default-resources."""
    job = build_job({"_cores": 1, "gpu": 0, "gpu_manufacturer": "nvidia"})
    assert container(job)["resources"]["requests"]["nvidia.com/gpu"] == "0"
    assert job["spec"]["template"]["spec"]["tolerations"]


def test_privileged_false_in_a_profile_turns_privileged_on(tmp_path):
    from snakemake.cli import parse_args
    from snakemake_interface_executor_plugins.registry import ExecutorPluginRegistry

    (tmp_path / "config.yaml").write_text("executor: kubernetes\nkubernetes-privileged: false\n")
    _, args = parse_args(["--profile", str(tmp_path), "--dry-run"])
    settings = ExecutorPluginRegistry().get_plugin("kubernetes").get_settings(args)
    assert settings.privileged, "the trap is gone: revisit the profile comment"
    assert container(build_job({"_cores": 1}, privileged=settings.privileged))["securityContext"]["privileged"]
    _, args = parse_args(["--profile", str(PROFILE), "--dry-run"])
    ours = ExecutorPluginRegistry().get_plugin("kubernetes").get_settings(args)
    assert not ours.privileged
    assert ours.namespace == "cellscale" and ours.service_account_name == "cellscale-runner"


class _NoLimit:
    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        return False


def _failed_pod_status(ex):
    """A Job whose pod ended with exit code 137 (a reclaimed spot node), as the API reports it."""
    client = kubernetes.client
    ex.batchapi.answers["read_namespaced_job_status"] = client.V1Job(status=client.V1JobStatus(failed=1))
    terminated = client.V1ContainerState(terminated=client.V1ContainerStateTerminated(exit_code=137))
    pod = client.V1Pod(metadata=client.V1ObjectMeta(name="snakejob-1-abcde"), status=client.V1PodStatus(
        container_statuses=[client.V1ContainerStatus(name="snakemake", image="x", image_id="", ready=False,
                                                     restart_count=0, state=terminated)]))
    ex.kubeapi.answers["list_namespaced_pod"] = client.V1PodList(items=[pod])

    def read_log(name, namespace, container, previous=False):
        if previous:  # restartPolicy Never: there is no previous container
            raise client.rest.ApiException(status=400, reason="Bad Request")
        return "killed"
    ex.kubeapi.answers["read_namespaced_pod_log"] = read_log


def test_failed_job_is_reported_not_fatal(tmp_path):
    """0.5.0 reads the failed pod's current log and reports the job as failed (Snakemake then retries it);
    0.5.1 asks for previous=True, the API answers 400 and the whole run aborts."""
    ex = _executor(tmp_path=tmp_path)
    ex.status_rate_limiter = _NoLimit()
    _failed_pod_status(ex)
    info = SimpleNamespace(external_jobid="snakejob-1", job="job-1")

    async def drain():
        return [j async for j in ex.check_active_jobs([info])]
    still_active = asyncio.run(drain())
    assert still_active == [] and [e[0] for e in ex.errors] == [info]
    log_reads = [kw for name, _, kw in ex.kubeapi.calls if name == "read_namespaced_pod_log"]
    assert log_reads and not any(kw.get("previous") for kw in log_reads)
    assert "previous=True" not in inspect.getsource(plugin.Executor.check_active_jobs)


def test_preemptible_rules_without_retries_get_none():
    from snakemake.rules import Rule
    from snakemake.settings.types import PreemptibleRules, RemoteExecutionSettings

    def retries(preemptible: bool, preemptible_retries):
        rule = SimpleNamespace(name="tile", _restart_times=None, workflow=SimpleNamespace(
            execution_settings=SimpleNamespace(retries=3),
            remote_execution_settings=RemoteExecutionSettings(
                preemptible_rules=PreemptibleRules(all=preemptible), preemptible_retries=preemptible_retries)))
        return Rule.restart_times.fget(rule)
    assert retries(False, None) == 3
    assert retries(True, None) is None     # the trap
    assert retries(True, 5) == 5


def test_sources_over_10_mb_are_not_deployed():
    importlib.import_module("snakemake.api")   # snakemake.workflow imported first is a circular import (9.27)
    from snakemake.workflow import Workflow

    assert "max_file_size = 10000000" in inspect.getsource(Workflow.write_source_archive)


def test_pods_first_pip_install_the_storage_plugins():
    """Why the image carries the plugins' wheels and PIP_NO_INDEX / PIP_FIND_LINKS (Dockerfile)."""
    assert plugin.common_settings.auto_deploy_default_storage_provider
    dockerfile = (ROOT / "Dockerfile").read_text()
    for var in ("PIP_NO_INDEX=1", "PIP_NO_DEPS=1", "PIP_FIND_LINKS=/opt/wheels"):
        assert var in dockerfile
    for dist in ("snakemake-storage-plugin-gcs", "snakemake-storage-plugin-fs", "snakemake"):
        assert f'"{dist}=={PINNED[dist]}"' in dockerfile, dist


# -- the profile against these facts ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def profile():
    return gke.load_profile(PROFILE, environ={"CELLSCALE_GCP_PROJECT": "demo-project"})


def test_profile_avoids_each_trap(profile):
    assert "kubernetes-privileged" not in profile
    assert "gpu" not in profile["default-resources"] and "gpu_manufacturer" not in profile["default-resources"]
    gpu_rules = {r for r, res in profile["set-resources"].items() if res.get("gpu")}
    assert gpu_rules == {"segment", "segment_batch"}  # a large image's shards; a batch of small images
    for rule in gpu_rules:
        seg = profile["set-resources"][rule]
        assert seg["gpu"] == 1 and seg["gpu_manufacturer"] == "nvidia" and seg["scale"] == 0
        assert seg["machine_type"] != profile["default-resources"]["machine_type"]
    assert not any("machine_type" in res for r, res in profile["set-resources"].items() if r not in gpu_rules)
    assert ("preemptible-rules" in profile) == ("preemptible-retries" in profile)
    assert profile["retries"] >= 1
    assert profile["default-storage-provider"] == "gcs"
    assert profile["default-storage-prefix"] == "gs://demo-project-cellscale/cellscale"
    assert profile["shared-fs-usage"] == "none"
    assert profile["container-image"] == "us-central1-docker.pkg.dev/demo-project/cellscale/cellscale:0.1.0"


def test_profile_requests_fit_the_pools(profile):
    """Every job fits one node of the pool its machine type selects; no job groups (Snakemake 9 does not regroup
    the jobs a checkpoint creates, and every job here follows plan_batches)."""
    s = gke.settings(PROFILE, environ={"CELLSCALE_GCP_PROJECT": "demo-project"})
    pools = {p.machine_type: p for p in s.pools()}
    for rule, res in {**profile["set-resources"], "(default)": {}}.items():
        res = {**profile["default-resources"], **res}
        pool = pools[res["machine_type"]]
        assert int(res["mem_mb"]) <= pool.memory_mb, rule
        assert res.get("gpu", 0) <= pool.gpus, rule
    assert "groups" not in profile and "group-components" not in profile


def test_profile_and_cluster_agree(profile):
    s = gke.settings(PROFILE, environ={"CELLSCALE_GCP_PROJECT": "demo-project", "CELLSCALE_REGION": "europe-west4"})
    assert s.image.startswith("europe-west4-docker.pkg.dev/demo-project/")
    assert (s.bucket, s.prefix) == ("demo-project-cellscale", "cellscale")
    docs = {(d["kind"], d["metadata"]["name"]): d for d in gke.manifests(PROFILE)}
    assert ("Namespace", profile["kubernetes-namespace"]) in docs
    sa = docs[("ServiceAccount", profile["kubernetes-service-account-name"])]
    assert sa["metadata"]["namespace"] == profile["kubernetes-namespace"]
    binding = docs[("MutatingAdmissionPolicyBinding", "cellscale-job-defaults")]
    assert binding["spec"]["matchResources"]["namespaceSelector"]["matchLabels"] == \
        {"kubernetes.io/metadata.name": profile["kubernetes-namespace"]}
