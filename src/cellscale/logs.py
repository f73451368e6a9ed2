"""Logging for steps run by a workflow or the command line: one log file a step."""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
import traceback
from contextlib import contextmanager
from pathlib import Path


class Progress:
    """Which steps of a loop of ``total`` a progress log names: the last, and another only once both ``share`` of
    the steps (a tenth) and ``every_s`` seconds have passed since the line before, so a fast loop logs one line
    and a slow one a line about every tenth of the way."""

    def __init__(self, total: int, share: float = 0.1, every_s: float = 30.0):
        self.total, self.step, self.every_s = total, max(1, round(total * share)), every_s
        self.last_done, self.last_time = 0, time.monotonic()

    def due(self, done: int) -> bool:
        """Whether step ``done`` (counted from 1) gets a line."""
        now = time.monotonic()
        if done < self.total and (done - self.last_done < self.step or now - self.last_time < self.every_s):
            return False
        self.last_done, self.last_time = done, now
        return True


def _terminated(signum, frame):
    """SIGTERM (scancel, a preempted spot node, Ctrl-C of the workflow) as an exception, so that the
    step's ``finally`` blocks remove its temporary files before the process ends."""
    raise SystemExit(128 + signum)


class _Notes(logging.Handler):
    """Keeps the messages of warnings this thread logs (see :func:`captured_warnings`)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.thread, self.messages = threading.get_ident(), []

    def emit(self, record):
        if record.thread == self.thread:
            self.messages.append(record.getMessage())


@contextmanager
def captured_warnings():
    """The messages of the warnings the ``cellscale`` logger gets from this thread inside the block (a list, filled
    as they come), for a result to carry what its log says (``warnings`` in summary.tsv); they are logged as before."""
    logger, handler = logging.getLogger("cellscale"), _Notes()
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)


def rule_name(logs, default: str | None = None) -> str | None:
    """A workflow rule's name as rules/*.smk gives it: its first named log's (a project's ``use rule * from cellscale
    as cellscale_*`` renames the rule, not its logs); ``default`` for a rule without named logs."""
    return next(iter(logs.keys()), default)


def run_job(job, steps: dict):
    """Run a workflow job (a Snakemake script's ``snakemake`` object: its named ``log``, ``wildcards``) as the step
    of its rule, ``steps[rule]`` (the rule by :func:`rule_name`), logged to its log as that rule and its wildcards'
    values (:func:`step_log`)."""
    rule = rule_name(job.log)
    with step_log(job.log[0], " ".join([rule, *map(str, job.wildcards)])):
        return steps[rule](job)


@contextmanager
def step_log(path=None, name: str = "step"):
    """Send the ``cellscale`` logger to ``path`` (and stderr) for one step.

    An exception is written to the log with its traceback and re-raised, so the
    workflow reports the failure and the log says why. SIGTERM ends the step
    through its ``finally`` blocks (exit status 143), so the atomic writers
    remove their temporary files (:func:`cellscale.io.atomic_path`).
    """
    logger = logging.getLogger("cellscale")
    logger.setLevel(logging.INFO)
    handlers = [logging.StreamHandler(sys.stderr)]
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(path, mode="w"))
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
    for h in handlers:
        h.setFormatter(fmt)
        logger.addHandler(h)
    start = time.time()
    logger.info("%s started", name)
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminated) if in_main else None
    try:
        yield logger
        logger.info("%s finished in %.1f s", name, time.time() - start)
    except SystemExit as stop:
        if stop.code == 128 + signal.SIGTERM:
            logger.error("%s terminated (SIGTERM) after %.1f s; its partial outputs were removed", name,
                         time.time() - start)
        raise
    except Exception as err:
        logger.error("%s failed: %s", name, err)
        logger.debug("".join(traceback.format_exc()))
        if path:
            with open(path, "a") as fh:
                fh.write(traceback.format_exc())
        raise
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
        for h in handlers:
            logger.removeHandler(h)
            h.close()
