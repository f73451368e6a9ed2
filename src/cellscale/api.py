"""Loading a segmentation model from Python as ``cellscale segment --model`` does (docs/api.md).

:func:`load_model` takes what the command line's ``--model`` takes (a model folder, a shipped model's name, a
registry ``NAME@VERSION``) and the network settings with the workflow's defaults (config ``segment``), and returns
the :class:`~cellscale.segment.predictor.Predictor` that :func:`cellscale.segment.image.segment_image` runs.
``cellscale segment`` loads its model through it, so the Python path and the command line segment alike.
"""

from __future__ import annotations

import os
from cellscale.registry import model_path
from cellscale.segment.predictor import Predictor
from cellscale.segment.settings import SegmentSettings

__all__ = ["load_model"]


def load_model(model: "str | os.PathLike | dict", *, precision: str | None = None, augment: str | None = None,
               batch_mpx: float | None = None, batch_size: int | None = None, threads: int | None = None) -> Predictor:
    """A loaded segmentation model.

    Parameters
    ----------
    model : a model folder (holding ``model.json``); a shipped model's name (``"nuclear"``: 1 input, nuclei;
        ``"tissue"``: nuclear and membrane inputs, nuclei and whole cells; ``cellscale models list`` lists
        them); a registry ``NAME@VERSION`` (a version prefix is enough) or ``NAME@latest``; or a declared model
        (a mapping with ``path``, ``inputs``, ``compartments``... as the workflow config's ``models`` takes).
        A folder of that name in the current folder goes first.
    precision, augment : the network's arithmetic and test-time augmentation (see
        :class:`~cellscale.segment.predictor.Predictor`); ``None``: the workflow's and ``cellscale segment``'s
        defaults (config ``segment``, :class:`~cellscale.segment.settings.SegmentSettings`).
    batch_mpx : megapixels of windows per forward pass (memory grows with it); ``None``: the workflow's and
        ``cellscale segment``'s (config ``segment.batch_mpx``).
    batch_size : a fixed number of windows per forward pass instead (not with ``batch_mpx``). int8 maps depend on
        neither, float32 ones on a CPU not above 1 window a pass.
    threads : CPU threads of the int8 runtime (default: the cores this process may use).

    A name that is neither a folder nor a registered model is a FileNotFoundError listing the models there are.
    """
    folder = model if isinstance(model, dict) else model_path(model, f"model {str(model)!r}")
    if batch_size is not None and batch_mpx is not None:
        raise ValueError(f"batch_size {batch_size} and batch_mpx {batch_mpx:g}: give one (windows a pass, or their "
                         f"megapixels)")
    if batch_size is None:
        batch_mpx = SegmentSettings().batch_mpx if batch_mpx is None else batch_mpx
    # None: Predictor's own defaults, the config's (SegmentSettings)
    given = {k: v for k, v in (("precision", precision), ("augment", augment), ("batch_size", batch_size))
             if v is not None}
    return Predictor(folder, batch_mpx=batch_mpx, threads=threads, **given)
