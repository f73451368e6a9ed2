"""Logging for steps run by a workflow or the command line: one log file a step."""

from __future__ import annotations

import logging
import sys
import time
import traceback
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def step_log(path=None, name: str = "step"):
    """Send the ``cellscale`` logger to ``path`` (and stderr) for one step.

    An exception is written to the log with its traceback and re-raised, so the
    workflow reports the failure and the log says why.
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
    try:
        yield logger
        logger.info("%s finished in %.1f s", name, time.time() - start)
    except Exception as err:
        logger.error("%s failed: %s", name, err)
        logger.debug("".join(traceback.format_exc()))
        if path:
            with open(path, "a") as fh:
                fh.write(traceback.format_exc())
        raise
    finally:
        for h in handlers:
            logger.removeHandler(h)
            h.close()
