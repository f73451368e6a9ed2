"""Cores this process may use, and an ordered map over threads or processes with bounded look-ahead."""

from __future__ import annotations

import os


def available_cores() -> int:
    """CPU cores this process may use (the job's allocation under SLURM or Kubernetes)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def ordered_map(fn, items, workers: int, pool=None):
    """``map(fn, items)`` on ``workers`` threads, or on ``pool`` (an executor of ``workers`` workers, e.g.
    processes), results in order, at most 2 x workers pending; with a pool, ``items`` may be endless."""
    from collections import deque

    if pool is None:
        if workers <= 1 or len(items) < 2:
            yield from map(fn, items)
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(workers) as threads:
            yield from ordered_map(fn, items, workers, threads)
        return
    pending = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= 2 * workers:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()
