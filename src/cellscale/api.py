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

__all__ = ["load_model"]


def load_model(model: "str | os.PathLike | dict", *, precision: str | None = None, augment: str | None = None,
               batch_size: int = 8, threads: int | None = None) -> Predictor:
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
    batch_size : windows per forward pass (memory); int8 maps do not depend on it, float32 ones on a CPU not
        above 1.
    threads : CPU threads of the int8 runtime (default: the cores this process may use).

    A name that is neither a folder nor a registered model is a FileNotFoundError listing the models there are.
    """
    folder = model if isinstance(model, dict) else model_path(model, f"model {str(model)!r}")
    # None: Predictor's own defaults, the config's (SegmentSettings)
    given = {k: v for k, v in (("precision", precision), ("augment", augment)) if v is not None}
    return Predictor(folder, batch_size=batch_size, threads=threads, **given)
