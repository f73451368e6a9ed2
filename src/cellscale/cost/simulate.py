"""A discrete-event simulation (SimPy) of a planned run, to check :func:`.model.predict` against.

The same run as the model describes (see :mod:`.model`), event by event: ``plan_batches`` on the launcher, then every
``segment_batch`` job queued on the segment pool, each batch's export jobs queued on the CPU pool as its segment job
ends (ahead of the segment jobs waiting there, when that is the same pool), then the tail (``aggregate_measurements``
and ``report_fields``, then ``summary``) on the CPU pool. Jobs reach the pools as Snakemake submits them: at the end
of a scheduling round, at most its ``jobs`` at once, a batch's exports first (the export rules' ``priority``); while
jobs wait, rounds follow each other, each ``storage_call_s`` x its requests long (``Overheads.round_b`` and, with
staged fields, ``launcher_scan_b_per_image`` a waiting field), and their requests are counted and priced. Each pool
has a cluster autoscaler that scans every ``scan_s`` seconds: it asks for as many new nodes as the pending jobs need,
up to the pool's maximum (a VM is created ``provision_s`` later and runs pods ``startup_s`` after that), and removes a
node that has been empty for ``idle_s``. A job takes ``1 / k`` of a node, ``k`` being its rule's jobs per node on that
machine (by vCPUs and memory); it goes to the first ready node with room (first fit, exports first), holds it for its
duration (the per-job overhead included) and frees it. Spot nodes are preempted by a Poisson process
(``preemption`` per node-hour, from VM creation): the node disappears with its running jobs, which go back to the
queue (Snakemake's retries, at most ``retries`` per job; a job that runs out is counted
in ``failed_jobs``), and the autoscaler replaces the node at its next scan. Seeded: the same seed gives the same run.

Every batch's jobs take the mean batch's time, as in the model (the batches, cut by content, hold from a few fields
of view to :data:`~cellscale.settings.BATCH_CAP` x ``shard_mpx``, about ``shard_mpx`` on average), and the largest
batch's memory (:func:`.model.batch_mpx`), as their pods ask. The cost uses :func:`.model.run_costs` on the simulated
wall time and node-seconds, so only the mechanics differ from the model. :func:`figure` draws nodes and running jobs
over time per pool.
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass, field

import simpy

from .model import (MCQUANT, TAIL_LAST, Choice, Overheads, PoolChoice, Workload, batch_mpx, export_jobs,
                    export_slots, plan_batches_s, run_costs, segment_job_s, segment_rate, slots_per_node,
                    snakemake_jobs, tail_job_s)
from .prices import PriceTable
from .throughput import ThroughputProfile


@dataclass
class SimResult:
    hours: float
    cost_usd: float
    breakdown: dict[str, float]
    node_hours: dict[str, float]
    preemptions: int
    retried_jobs: int
    failed_jobs: int
    timeline: list[tuple[float, str, int, int]] = field(default_factory=list)   # (seconds, pool, nodes, running jobs)
    preempted: list[tuple[float, str]] = field(default_factory=list)   # (seconds, pool) of each preemption
    round_requests: float = 0.0          # the launcher's class B requests in scheduling rounds while jobs waited


class _Node:
    def __init__(self, pool: "_Pool", created: float):
        self.pool, self.created, self.removed = pool, created, None
        self.ready = False
        self.running: list = []          # (job, process)
        self.idle_since = created
        self.alive = True

    def used(self) -> float:
        return sum(job["size"] for job, _ in self.running)


_FULL = 1.0 + 1e-9   # k jobs of 1/k each fill a node


class _Pool:
    def __init__(self, sim: "_Sim", choice: PoolChoice, machine):
        self.sim, self.choice, self.machine = sim, choice, machine
        self.nodes: list[_Node] = []
        self.queues: dict[tuple[int, float], deque] = {}   # (priority, size) -> pending jobs, lower priority first
        self.requested = 0               # VMs asked for, not created yet

    def alive(self) -> list[_Node]:
        return [n for n in self.nodes if n.alive]

    def running(self) -> int:
        return sum(len(n.running) for n in self.alive())

    def queue(self, job) -> deque:
        self.queues = _with_queue(self.queues, (job["priority"], job["size"]))
        return self.queues[(job["priority"], job["size"])]

    def pending(self) -> float:
        """Nodes' worth of pending jobs."""
        return sum(size * len(q) for (_, size), q in self.queues.items())


def _with_queue(queues: dict, key) -> dict:
    """``queues`` (key -> deque, kept in key order: the lowest goes first) with one for ``key``."""
    return queues if key in queues else dict(sorted({**queues, key: deque()}.items()))


class _Sim:
    def __init__(self, choice: Choice, prices: PriceTable, o: Overheads, preemption: float, seed: int):
        self.env = simpy.Environment()
        self.o, self.preemption = o, preemption
        self.rng = random.Random(seed)
        self.pools: dict[str, _Pool] = {}
        self.timeline: list[tuple[float, str, int, int]] = []
        self.preemptions = self.retried = self.failed = 0
        self.preempted: list[tuple[float, str]] = []
        # Snakemake's side: ready jobs not submitted yet (by priority), and at most `limit` submitted at once
        self.limit = 1
        self.outstanding = 0
        self.waiting: dict[int, deque] = {}
        self.waiting_fields = 0.0
        self.round_requests = 0.0
        self.wake = None

    def record(self, pool: _Pool):
        self.timeline.append((self.env.now, pool.choice.name, len(pool.alive()), pool.running()))

    # --- jobs ---------------------------------------------------------------------------------------------------
    def submit(self, pool: _Pool, duration: float, slots: int, priority: int = 1, fields: float = 0.0):
        """A job that is ready, takes 1 / ``slots`` of a node and reads ``fields`` staged fields; a lower
        ``priority`` goes first. Snakemake submits it at the end of a scheduling round (:meth:`launcher`)."""
        job = {"duration": duration, "tries": 0, "done": self.env.event(), "size": 1.0 / slots,
               "priority": priority, "pool": pool, "fields": fields}
        self.waiting = _with_queue(self.waiting, priority)
        self.waiting[priority].append(job)
        self.waiting_fields += fields
        self.poke()
        return job["done"]

    def poke(self):
        if self.wake is not None and not self.wake.triggered:
            self.wake.succeed()

    def has_waiting(self) -> bool:
        return any(self.waiting.values())

    def release(self):
        """The end of a scheduling round: Snakemake submits waiting jobs up to its ``jobs``."""
        touched = []
        for queue in self.waiting.values():
            while queue and self.outstanding < self.limit:
                job = queue.popleft()
                self.outstanding += 1
                self.waiting_fields -= job["fields"]
                job["pool"].queue(job).append(job)
                if job["pool"] not in touched:
                    touched.append(job["pool"])
        for pool in touched:
            self.dispatch(pool)

    def launcher(self, per_field: float):
        """Snakemake's scheduling rounds: while jobs wait they run back to back, each ``storage_call_s`` x its
        requests long (``round_b``, and ``per_field`` for every waiting job's staged field), and the jobs that fit go
        out at a round's end; the first round (all fields, in the launcher's phase before it) is free."""
        env, o = self.env, self.o
        first = True
        while True:
            if not self.has_waiting() or (self.outstanding >= self.limit and (first or o.storage_call_s <= 0)):
                self.wake = env.event()
                yield self.wake
                continue
            requests = o.round_b + per_field * self.waiting_fields
            length = 0.0 if first else o.storage_call_s * requests
            first = False
            if length <= 0:
                self.release()
                continue
            start = env.now
            yield env.timeout(length)
            rounds = 1
            while self.outstanding >= self.limit:     # nothing can go out: rounds go on until a slot frees
                self.wake = env.event()
                yield self.wake
                rounds = max(1, math.ceil((env.now - start) / length - 1e-9))
                yield env.timeout(max(0.0, start + rounds * length - env.now))
            self.round_requests += rounds * requests
            self.release()

    def done(self, job):
        self.outstanding -= 1
        job["done"].succeed()
        self.poke()

    def dispatch(self, pool: _Pool):
        started = False
        ready = [n for n in pool.nodes if n.alive and n.ready]
        for (_, size), queue in pool.queues.items():
            for node in ready:
                while queue and node.used() + size <= _FULL:
                    job = queue.popleft()
                    job["tries"] += 1
                    proc = self.env.process(self.run_job(pool, node, job))
                    node.running.append((job, proc))
                    started = True
        if started:
            self.record(pool)

    def run_job(self, pool: _Pool, node: _Node, job):
        try:
            yield self.env.timeout(job["duration"])
        except simpy.Interrupt:
            return                            # the node was preempted: preempt() requeued the job
        node.running = [(j, p) for j, p in node.running if j is not job]
        if not node.running:
            node.idle_since = self.env.now
        self.done(job)
        if pool.pending():
            self.dispatch(pool)
        else:
            self.record(pool)

    # --- nodes --------------------------------------------------------------------------------------------------
    def add_node(self, pool: _Pool):
        pool.requested += 1
        yield self.env.timeout(self.o.provision_s)
        pool.requested -= 1
        node = _Node(pool, self.env.now)
        pool.nodes.append(node)
        self.record(pool)
        if pool.choice.spot and self.preemption > 0:
            self.env.process(self.preempter(node))
        yield self.env.timeout(self.o.startup_s(pool.machine))
        if node.alive:
            node.ready, node.idle_since = True, self.env.now
            self.dispatch(pool)

    def remove(self, node: _Node):
        node.alive, node.removed = False, self.env.now
        self.record(node.pool)

    def preempter(self, node: _Node):
        yield self.env.timeout(self.rng.expovariate(self.preemption / 3600.0))
        if not node.alive:
            return
        self.preemptions += 1
        pool = node.pool
        self.preempted.append((self.env.now, pool.choice.name))
        lost = node.running
        node.running = []
        self.remove(node)
        for job, proc in lost:
            proc.interrupt()
            if job["tries"] > self.o.retries:
                self.failed += 1
                self.done(job)                # Snakemake gives up on it (keep-going): the run goes on
            else:
                self.retried += 1
                pool.queue(job).appendleft(job)
        self.dispatch(pool)

    def autoscaler(self, pool: _Pool):
        o = self.o
        while True:
            alive = pool.alive()
            free = sum(1.0 - n.used() for n in alive if n.ready)
            starting = sum(1 for n in alive if not n.ready) + pool.requested
            short = pool.pending() - free - starting
            room = pool.choice.nodes - len(alive) - pool.requested
            for _ in range(min(room, math.ceil(short - 1e-9)) if short > 1e-9 else 0):
                self.env.process(self.add_node(pool))
            for node in alive:
                if node.ready and not node.running and self.env.now - node.idle_since >= o.idle_s:
                    self.remove(node)
            yield self.env.timeout(o.scan_s)


def simulate(w: Workload, choice: Choice, profiles: dict[str, ThroughputProfile], prices: PriceTable,
             o: Overheads = Overheads(), preemption: float = 0.0, seed: int = 0) -> SimResult:
    """Run ``w`` as ``choice`` event by event; ``preemption`` per node-hour on spot pools."""
    sim = _Sim(choice, prices, o, preemption, seed)
    env = sim.env
    seg_rate = segment_rate(profiles[choice.segment.machine], w, o)
    tail_profile = profiles[choice.tail.machine]
    for pc in (choice.segment, choice.tail):
        if pc.name not in sim.pools:
            sim.pools[pc.name] = _Pool(sim, pc, prices.machine(pc.machine))
    seg_pool, tail_pool = sim.pools[choice.segment.name], sim.pools[choice.tail.name]
    k = max(1, slots_per_node(seg_pool.machine, seg_rate, batch_mpx(choice.shard_mpx)))
    jobs = w.jobs(choice.shard_mpx)
    d = segment_job_s(w, seg_rate, choice.shard_mpx, o)
    exports = export_jobs(w, tail_profile, tail_pool.machine, choice.shard_mpx, o)
    # a batch's exports go before the waiting batches: the export rules' priority is above segment_batch's (both
    # Snakemake schedulers select by it first), and on the segment pool they go first too
    tails = tail_job_s(w, tail_profile, o)
    finished = {}
    n = min(choice.segment.nodes, math.ceil(jobs / k))
    sim.limit = snakemake_jobs(w, choice, n, k, export_slots(exports))
    fields = w.images / jobs

    def batch():
        yield sim.submit(seg_pool, d, k, fields=fields)
        if exports:
            yield simpy.AllOf(env, [sim.submit(tail_pool, e, kr, 0) for e, kr in exports])

    def tables(k_tail: int):   # aggregate_measurements, then mcquant where the run writes its CSVs
        yield sim.submit(tail_pool, tails["aggregate_measurements"], k_tail)
        if w.mcquant:
            yield sim.submit(tail_pool, tails[MCQUANT.rule], k_tail)

    def run():
        yield env.timeout(plan_batches_s(w, tail_profile, o, jobs))
        yield simpy.AllOf(env, [env.process(batch()) for _ in range(jobs)])
        if w.run_tables:
            k_tail = max(1, slots_per_node(tail_pool.machine, tail_profile.rate(TAIL_LAST), choice.shard_mpx))
            yield simpy.AllOf(env, [env.process(tables(k_tail)), sim.submit(tail_pool, tails["report_fields"], k_tail)])
            yield sim.submit(tail_pool, tails[TAIL_LAST], k_tail)
        finished["t"] = env.now

    main = env.process(run())
    env.process(sim.launcher(o.launcher_scan_b_per_image if w.fields_staged else 0.0))
    for pool in sim.pools.values():
        env.process(sim.autoscaler(pool))
    env.run(until=main)
    wall = finished["t"]
    # nodes still up at the end are removed idle_s (+ about half a scan) after their last job, as the model bills
    node_s, breakdown = {}, {}
    for name, pool in sim.pools.items():
        total = 0.0
        for node in pool.nodes:
            ready = node.created + o.startup_s(pool.machine)
            end = node.removed if node.removed is not None else max(node.idle_since, ready) + o.idle_s + o.scan_s / 2
            total += end - node.created
        node_s[name] = total
        breakdown[f"compute:{name}"] = total / 3600 * pool.machine.hourly(pool.choice.spot)
    breakdown.update(run_costs(w, prices, o, wall, sum(node_s.values()), jobs, retried_jobs=sim.retried,
                               round_requests=sim.round_requests))
    return SimResult(hours=wall / 3600, cost_usd=sum(breakdown.values()), breakdown=breakdown,
                     node_hours={k: v / 3600 for k, v in node_s.items()}, preemptions=sim.preemptions,
                     retried_jobs=sim.retried, failed_jobs=sim.failed, timeline=sim.timeline,
                     preempted=sim.preempted, round_requests=sim.round_requests)


def simulate_mean(w, choice, profiles, prices, o=Overheads(), preemption=0.0, seeds=(0, 1, 2, 3, 4)):
    """Mean wall hours and cost over ``seeds`` (one seed when nothing is random)."""
    seeds = seeds if preemption > 0 else seeds[:1]
    runs = [simulate(w, choice, profiles, prices, o, preemption, seed) for seed in seeds]
    return (sum(r.hours for r in runs) / len(runs), sum(r.cost_usd for r in runs) / len(runs), runs)


def figure(result: SimResult, path, title: str = ""):
    """Nodes and running jobs over time, one panel per pool (PNG at ``path``): nodes on the left axis, running jobs
    on the right (a node runs several), each preemption a red tick, and the time before the pool's first job (the
    launcher's requests and plan_batches, then node start-up) shaded; states shorter than a thousandth of the run
    are not drawn."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pools = sorted({p for _, p, _, _ in result.timeline})
    fig, axes = plt.subplots(len(pools), 1, figsize=(8, 2.8 * len(pools)), sharex=True, squeeze=False)
    for ax, pool in zip(axes[:, 0], pools):
        pts = [(0.0, 0, 0)] + [(t / 3600, n, r) for t, p, n, r in result.timeline if p == pool]
        # states shorter than a thousandth of the run are left out: a wave's slots refill a scheduling round (a
        # tenth of a second) after its jobs end, which would draw as a drop to zero
        eps = result.hours / 1000
        pts = [a for a, b in zip(pts, pts[1:]) if b[0] - a[0] >= eps] + [pts[-1]]
        pts.append((result.hours, pts[-1][1], pts[-1][2]))
        t, nodes, running = zip(*pts)
        first_job = next((h for h, _, r in pts if r > 0), 0.0)
        ax.axvspan(0, first_job, color="0.9", label="before the first job")
        ax.step(t, nodes, where="post", color="C0", label="nodes")
        jobs_ax = ax.twinx()
        jobs_ax.step(t, running, where="post", color="C1", alpha=0.8)
        jobs_ax.set_ylabel("running jobs", color="C1")
        jobs_ax.set_ylim(0, max(running) * 1.15 + 1)
        ax.set_ylim(0, max(nodes) * 1.15 + 1)
        hits = [h / 3600 for h, p in result.preempted if p == pool]
        if hits:
            ax.plot(hits, [max(nodes) * 1.07 + 0.5] * len(hits), "v", color="red", label=f"preemption ({len(hits)})")
        ax.plot([], [], color="C1", label="running jobs (right)")
        ax.set_ylabel(f"{pool}: nodes", color="C0")
        ax.set_xlim(0, result.hours * 1.01)
        ax.legend(loc="lower center", fontsize=8, ncol=4)
    axes[-1, 0].set_xlabel("hours")
    fig.suptitle(title or f"simulated run: {result.hours:.2f} h, ${result.cost_usd:.2f}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
