"""A local stand-in for the few Kubernetes API calls that snakemake-executor-plugin-kubernetes makes.

It lets the real plugin, driven by the real ``snakemake --profile profiles/gke``, submit its Job objects over
HTTP to an address on the loopback interface. Every Job body is recorded exactly as the plugin sent it, so the
pod specs can be checked and schema-validated without a cluster. Each pod is then either

- scheduled on a declared node pool (node selector, taints and tolerations, allocatable CPU, memory and GPUs,
  as kube-scheduler decides) or left Pending when nothing fits, as a real cluster does; and
- run as a local process in a fresh, empty scratch folder (the pod's ``emptyDir`` mounted at ``/workdir``), so a
  workflow only finishes if every job gets its inputs from the storage provider and nothing else;
- SIGKILLed mid-run for a seeded random fraction of first attempts (a spot node reclaimed), to prove that
  retries finish the run.

This is not Kubernetes: there is one pod per Job, no controllers, no admission plugins, no authentication and no
images (the pod runs with the environment it is given). It emulates what the plugin observes, nothing more.

Over 400 lines on purpose: the HTTP handler, the scheduler and the pod runner share one cluster state and one
lock, and are read together when a GKE test fails; split, each part would need the others' internals.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from cellscale.deploy.gke import INSTANCE_TYPE_LABEL, Pool  # noqa: F401 (Pool: the pools the emulated cluster has)

EXTENDED_RESOURCES = ("nvidia.com/gpu", "amd.com/gpu")
_SUFFIX = {"m": 1e-3, "": 1.0, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
           "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def quantity(value) -> float:
    """A Kubernetes resource quantity ("950m", "4000M", "2Gi", 1) as a float in base units."""
    match = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(value).strip())
    if not match or match.group(2) not in _SUFFIX:
        raise ValueError(f"not a Kubernetes quantity: {value!r}")
    return float(match.group(1)) * _SUFFIX[match.group(2)]


def _containers(pod_spec: dict) -> list[dict]:
    return pod_spec.get("containers") or []


def requests_of(pod_spec: dict) -> dict[str, float]:
    """Summed container requests: cpu in cores, memory in MB, extended resources in units."""
    total: dict[str, float] = {}
    for c in _containers(pod_spec):
        for name, value in ((c.get("resources") or {}).get("requests") or {}).items():
            amount = quantity(value) / (1e6 if name in ("memory", "ephemeral-storage") else 1)
            total[name] = total.get(name, 0.0) + amount
    return total


def api_errors(job: dict) -> list[str]:
    """What the API server's validation would reject in a Job (the checks a schema cannot express)."""
    errors = []
    for c in _containers(job["spec"]["template"]["spec"]):
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        for name in EXTENDED_RESOURCES:
            if name in req and name not in lim:
                errors.append(f"container {c['name']}: {name} requested without a limit "
                              "(Limit must be set for non overcommitable resources)")
            elif name in req and quantity(req[name]) != quantity(lim[name]):
                errors.append(f"container {c['name']}: {name} request must equal its limit")
        for name, value in req.items():
            if name in lim and quantity(value) > quantity(lim[name]):
                errors.append(f"container {c['name']}: {name} request exceeds its limit")
    return errors


def unschedulable_reasons(pod_spec: dict, pool: Pool) -> list[str]:
    """Why kube-scheduler would not place this pod on a node of ``pool`` (empty: it fits)."""
    reasons = []
    for key, value in (pod_spec.get("nodeSelector") or {}).items():
        if pool.labels.get(key) != value:
            reasons.append(f"node selector {key}={value}")
    tolerations = pod_spec.get("tolerations") or []
    for key, value, effect in pool.taints:
        if not any(_tolerates(t, key, value, effect) for t in tolerations):
            reasons.append(f"untolerated taint {key}={value}:{effect}")
    req = requests_of(pod_spec)
    if req.get("cpu", 0) > pool.cpu:
        reasons.append(f"cpu {req['cpu']:.2f} > {pool.cpu}")
    if req.get("memory", 0) > pool.memory_mb:
        reasons.append(f"memory {req['memory']:.0f}M > {pool.memory_mb}M")
    if req.get("nvidia.com/gpu", 0) > pool.gpus:
        reasons.append(f"nvidia.com/gpu {req['nvidia.com/gpu']:.0f} > {pool.gpus}")
    return reasons


def _tolerates(t: dict, key: str, value: str, effect: str) -> bool:
    if t.get("effect") not in (None, "", effect):
        return False
    if t.get("operator") == "Exists":
        return t.get("key") in (None, "", key)
    return t.get("key") == key and t.get("value", "") == value


def schedule(pod_spec: dict, pools: list[Pool]) -> Pool | None:
    """The first pool whose nodes can take the pod, or None (the pod stays Pending)."""
    return next((p for p in pools if not unschedulable_reasons(pod_spec, p)), None)


@dataclass
class _Pod:
    job: str
    name: str
    spec: dict
    attempt: int
    pool: Pool | None = None
    phase: str = "Pending"
    exit_code: int | None = None
    process: subprocess.Popen | None = None
    killed: bool = False
    deleted: bool = False
    workdir: Path | None = None
    log: Path | None = None
    started: float = 0.0


@dataclass
class Cluster:
    """The emulated API server plus a kubelet that runs pods as local processes.

    Parameters
    ----------
    pools : node pools pods may be scheduled on; a pod that fits none stays Pending.
    record_dir : gets ``jobs/<name>.json`` (each Job exactly as submitted), ``logs/<pod>.log`` and
        ``events.jsonl`` (scheduled, started, killed, finished).
    pod_env : the container's environment (what the image would set), without the run's secret; ``{pod}`` in a
        value becomes the pod's name.
    max_running : pods run at once (the cluster's capacity); the others wait Pending.
    kill_fraction, seed, kill_after : SIGKILL this fraction of first attempts (seeded), after a delay drawn
        uniformly from ``kill_after`` seconds, as a reclaimed spot node would.
    run_pods : False records and schedules Jobs but never runs them (they stay Pending).
    """

    pools: list[Pool]
    record_dir: Path
    pod_env: dict[str, str] = field(default_factory=dict)
    max_running: int = 2
    kill_fraction: float = 0.0
    seed: int = 0
    kill_after: tuple[float, float] = (1.5, 4.0)
    run_pods: bool = True

    def __post_init__(self):
        self.record_dir = Path(self.record_dir)
        for sub in ("jobs", "logs", "pods"):
            (self.record_dir / sub).mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._rng = random.Random(self.seed)  # drawn only when a pod starts: the n-th pod's fate is fixed
        self._serial = 0
        self.jobs: dict[str, dict] = {}
        self.pods: dict[str, _Pod] = {}
        self.secrets: dict[tuple[str, str], dict] = {}
        self._server: ThreadingHTTPServer | None = None
        self._stop = threading.Event()

    # -- lifecycle ---------------------------------------------------------------------------------------
    def start(self, namespace: str = "default") -> Path:
        """Serve on 127.0.0.1 (a free port); returns a kubeconfig that points at it."""
        handler = type("Handler", (_Handler,), {"cluster": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        threading.Thread(target=self._kubelet, daemon=True).start()
        port = self._server.server_address[1]
        kubeconfig = self.record_dir / "kubeconfig.yaml"
        kubeconfig.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
            "clusters": [{"name": "emulator", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
            "users": [{"name": "emulator", "user": {"token": "emulator"}}],
            "contexts": [{"name": "emulator",
                          "context": {"cluster": "emulator", "user": "emulator", "namespace": namespace}}],
        }, indent=1))
        return kubeconfig

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            for pod in self.pods.values():
                self._kill(pod)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> "Cluster":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- what the tests read ------------------------------------------------------------------------------
    def recorded_jobs(self) -> list[dict]:
        return [json.loads(p.read_text()) for p in sorted((self.record_dir / "jobs").glob("*.json"))]

    def events(self) -> list[dict]:
        path = self.record_dir / "events.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def _event(self, **event) -> None:
        event["time"] = round(time.time(), 3)
        with self._lock, open(self.record_dir / "events.jsonl", "a") as f:
            f.write(json.dumps(event) + "\n")

    # -- API objects ---------------------------------------------------------------------------------------
    def create_job(self, namespace: str, body: dict) -> dict:
        name = body["metadata"]["name"]
        (self.record_dir / "jobs" / f"{name}.json").write_text(json.dumps(body, indent=1, sort_keys=True))
        body = json.loads(json.dumps(body))
        body.setdefault("apiVersion", "batch/v1")
        body.setdefault("kind", "Job")
        body["metadata"]["namespace"] = namespace
        spec = body["spec"]["template"]["spec"]
        args = " ".join(spec["containers"][0].get("args") or [])
        attempt = re.search(r"--attempt (\d+)", args)
        self._serial += 1
        pod = _Pod(job=name, name=f"{name}-{self._serial:05d}", spec=spec,
                   attempt=int(attempt.group(1)) if attempt else 1)
        pod.pool = schedule(spec, self.pools)
        with self._lock:
            self.jobs[name] = body
            self.pods[name] = pod
        self._event(event="created", job=name, namespace=namespace, pod=pod.name, attempt=pod.attempt,
                    pool=pod.pool.name if pod.pool else None,
                    reasons={p.name: unschedulable_reasons(spec, p) for p in self.pools} if not pod.pool else None)
        return body

    def job_status(self, name: str) -> dict | None:
        with self._lock:
            body, pod = self.jobs.get(name), self.pods.get(name)
            if body is None:
                return None
            status: dict = {}
            if pod.phase == "Succeeded":
                status = {"succeeded": 1}
            elif pod.phase == "Failed":
                status = {"failed": 1, "conditions": [{"type": "Failed", "status": "True",
                                                      "reason": "BackoffLimitExceeded"}]}
            elif pod.phase == "Running":
                status = {"active": 1}
            return {**body, "status": status}

    def pod_object(self, pod: _Pod) -> dict:
        obj = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": pod.name, "labels": {"job-name": pod.job}},
               "spec": pod.spec, "status": {"phase": pod.phase}}
        if pod.phase != "Pending":
            state = ({"running": {}} if pod.phase == "Running" else
                     {"terminated": {"exitCode": pod.exit_code,
                                     "reason": "Error" if pod.exit_code else "Completed"}})
            obj["status"]["containerStatuses"] = [{
                "name": c["name"], "image": c.get("image") or "", "imageID": "", "ready": pod.phase == "Running",
                "restartCount": 0, "state": state} for c in pod.spec["containers"]]
        elif pod.pool is None:
            obj["status"]["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]
        return obj

    def pods_of_job(self, job: str) -> list[dict]:
        with self._lock:
            pod = self.pods.get(job)
            return [self.pod_object(pod)] if pod is not None and not pod.deleted else []

    def delete_pod(self, name: str) -> dict | None:
        with self._lock:
            pod = next((p for p in self.pods.values() if p.name == name), None)
            if pod is None:
                return None
            self._kill(pod)
            pod.deleted = True
            return self.pod_object(pod)

    def delete_job(self, name: str) -> bool:
        with self._lock:
            if name not in self.jobs:
                return False
            pod = self.pods[name]
            self._kill(pod)
            pod.deleted = True
            del self.jobs[name]
            return True

    def pod_log(self, name: str) -> str | None:
        with self._lock:
            pod = next((p for p in self.pods.values() if p.name == name), None)
        if pod is None:
            return None
        return pod.log.read_text(errors="replace") if pod.log and pod.log.exists() else ""

    # -- the kubelet ---------------------------------------------------------------------------------------
    def _kubelet(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                running = [p for p in self.pods.values() if p.phase == "Running"]
                for pod in running:
                    code = pod.process.poll()
                    if code is not None:
                        pod.exit_code = 137 if pod.killed else code
                        pod.phase = "Succeeded" if pod.exit_code == 0 else "Failed"
                        self._event(event="finished", job=pod.job, pod=pod.name, exit_code=pod.exit_code,
                                    killed=pod.killed, seconds=round(time.time() - pod.started, 2))
                        if pod.workdir is not None:
                            shutil.rmtree(pod.workdir, ignore_errors=True)  # emptyDir goes with the pod
                n_running = sum(p.phase == "Running" for p in self.pods.values())
                waiting = [p for p in self.pods.values() if p.phase == "Pending" and p.pool and not p.deleted]
                if self.run_pods:
                    for pod in waiting[: max(0, self.max_running - n_running)]:
                        self._run(pod)
            time.sleep(0.1)

    def _run(self, pod: _Pod) -> None:
        container = pod.spec["containers"][0]
        pod.workdir = self.record_dir / "pods" / pod.name
        pod.workdir.mkdir(parents=True)
        pod.log = self.record_dir / "logs" / f"{pod.name}.log"
        env = {name: value.replace("{pod}", pod.name) for name, value in self.pod_env.items()}
        for var in container.get("env") or []:
            if "value" in var:
                env[var["name"]] = var["value"]
            else:
                ref = var["valueFrom"]["secretKeyRef"]
                import base64

                secret = self.secrets[(self.jobs[pod.job]["metadata"]["namespace"], ref["name"])]
                env[var["name"]] = base64.b64decode(secret["data"][ref["key"]]).decode()
        argv = list(container.get("command") or []) + list(container.get("args") or [])
        with open(pod.log, "w") as log:
            pod.process = subprocess.Popen(argv, cwd=pod.workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        pod.phase, pod.started = "Running", time.time()
        preempt = pod.attempt == 1 and self._rng.random() < self.kill_fraction
        delay = self._rng.uniform(*self.kill_after)
        self._event(event="started", job=pod.job, pod=pod.name, pool=pod.pool.name, attempt=pod.attempt,
                    preempt_after=round(delay, 2) if preempt else None)
        if preempt:
            threading.Timer(delay, self._preempt, args=(pod,)).start()

    def _preempt(self, pod: _Pod) -> None:
        with self._lock:
            if pod.phase == "Running" and pod.process.poll() is None:
                self._kill(pod)
                self._event(event="killed", job=pod.job, pod=pod.name, after=round(time.time() - pod.started, 2))

    def _kill(self, pod: _Pod) -> None:
        if pod.process is not None and pod.process.poll() is None:
            pod.killed = True
            try:
                os.killpg(pod.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            pod.process.wait()


class _Handler(BaseHTTPRequestHandler):
    cluster: Cluster
    _JOBS = re.compile(r"/apis/batch/v1/namespaces/([^/]+)/jobs(?:/([^/]+))?(/status)?$")
    _PODS = re.compile(r"/api/v1/namespaces/([^/]+)/pods(?:/([^/]+))?(/log)?$")
    _SECRETS = re.compile(r"/api/v1/namespaces/([^/]+)/secrets(?:/([^/]+))?$")

    def log_message(self, *args) -> None:  # quiet
        pass

    def _body(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}") if length else {}

    def _send(self, code: int, obj) -> None:
        data = obj.encode() if isinstance(obj, str) else json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain" if isinstance(obj, str) else "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _status(self, code: int, reason: str, message: str) -> None:
        self._send(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
                          "reason": reason, "code": code})

    def _ok(self) -> None:
        self._send(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})

    def do_POST(self) -> None:  # noqa: N802
        path = urlparse(self.path).path
        c = self.cluster
        if m := self._JOBS.match(path):
            self._send(201, c.create_job(m.group(1), self._body()))
        elif m := self._SECRETS.match(path):
            body = self._body()
            c.secrets[(m.group(1), body["metadata"]["name"])] = body
            self._send(201, body)
        else:
            self._status(404, "NotFound", f"no route for POST {path}")

    def do_GET(self) -> None:  # noqa: N802
        url = urlparse(self.path)
        query = parse_qs(url.query)
        c = self.cluster
        if (m := self._JOBS.match(url.path)) and m.group(2):
            job = c.job_status(m.group(2))
            if job is None:
                self._status(404, "NotFound", f'jobs.batch "{m.group(2)}" not found')
            else:
                self._send(200, job)
        elif (m := self._PODS.match(url.path)) and not m.group(2):
            selector = query.get("labelSelector", [""])[0]
            job = selector.split("=", 1)[1] if selector.startswith("job-name=") else ""
            self._send(200, {"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": c.pods_of_job(job)})
        elif (m := self._PODS.match(url.path)) and m.group(3):
            if query.get("previous", ["false"])[0].lower() == "true":
                # restartPolicy Never: a container never restarts, so there is no previous one
                self._status(400, "BadRequest",
                             f'previous terminated container "snakemake" in pod "{m.group(2)}" not found')
                return
            log = c.pod_log(m.group(2))
            if log is None:
                self._status(404, "NotFound", f'pods "{m.group(2)}" not found')
            else:
                self._send(200, log)
        else:
            self._status(404, "NotFound", f"no route for GET {url.path}")

    def do_DELETE(self) -> None:  # noqa: N802
        path = urlparse(self.path).path
        self._body()
        c = self.cluster
        if (m := self._JOBS.match(path)) and m.group(2):
            self._ok() if c.delete_job(m.group(2)) else self._status(404, "NotFound", "job not found")
        elif (m := self._PODS.match(path)) and m.group(2):
            pod = c.delete_pod(m.group(2))
            self._send(200, pod) if pod else self._status(404, "NotFound", "pod not found")
        elif (m := self._SECRETS.match(path)) and m.group(2):
            c.secrets.pop((m.group(1), m.group(2)), None)
            self._ok()
        else:
            self._status(404, "NotFound", f"no route for DELETE {path}")
