"""Object size: the sizes a model was trained on, and the scale that brings an image's objects to them.

A sample's ``scale`` may be ``auto`` (``cellscale segment --scale auto``), as Cellpose estimates a diameter when
none is given. The model records the sizes of its training objects (``object_sizes`` in ``model.json``: per
training image the median equivalent diameter, then their median and percentiles; :func:`training_sizes`).
:func:`cellscale.segment.image.estimate_scale` segments central crops of the image at its own resolution and, as
:func:`search_scales` says, at coarser or finer scales; :func:`pick_diameter` takes the objects' median diameter
from those passes, and :func:`choose_scale` leaves an image whose objects are within the middle of the training
sizes (:data:`KEEP`) as it is (the same labels as without ``auto``) and brings any other to the training median.

The two choices (:data:`KEEP`, :data:`PICK`) were made on the DSB2018 validation split resampled to four
magnifications (0.4x to 4x), by mean F1; the held-out split's figures are in docs/benchmarks.md ("Object size").
The sizes come from the training masks. ``auto`` costs passes on crops of at most 1 Mpx of model pixels each
(about 1.4 Mpx in all for a large image): a user who knows the size gives a number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from cellscale.settings import AUTO, SCALE_BOUNDS, parse_scale

#: Edge (px) of the central crop of one frame that :func:`cellscale.segment.image.estimate_scale` segments (1 Mpx
#: at most).
SIZE_CROP = 1024


Edges = tuple[bool, bool, bool, bool]  # (top, bottom, left, right)


def median_diameter(labels: np.ndarray, exclude_edges: Edges = (False,) * 4) -> tuple[float, int]:
    """The median equivalent diameter (px) of the objects of a 2-D label image, and their number.

    ``exclude_edges`` (top, bottom, left, right): objects touching these edges are left out (the edges of a
    crop, where objects are cut). NaN and 0 when there is no object.
    """
    labels = np.asarray(labels)
    labels = np.where(labels > 0, labels, 0)  # (a negative value marks no object)
    drop = set()
    for edge, flag in zip((labels[0], labels[-1], labels[:, 0], labels[:, -1]), exclude_edges):
        if flag:
            drop.update(np.unique(edge).tolist())
    ids, areas = np.unique(labels[labels > 0], return_counts=True)  # (ids need not be consecutive)
    if drop:
        areas = areas[~np.isin(ids, np.fromiter(drop, np.int64))]
    if not len(areas):
        return float("nan"), 0
    return float(math.sqrt(4.0 * float(np.median(areas)) / math.pi)), int(len(areas))


def training_sizes(label_images, source: str) -> dict:
    """What a model records of its training objects' sizes (``object_sizes[compartment]`` in ``model.json``).

    ``label_images``: the compartment's 2-D label images of the training split. Per image the median equivalent
    diameter; over the images their median (the size the model knows best) and 10th and 90th percentiles (the
    range it has seen).
    """
    per_image = [d for d, n in (median_diameter(lab) for lab in label_images) if n]
    if not per_image:
        raise ValueError(f"no objects in the training labels ({source})")
    p10, p25, median, p75, p90 = (round(float(v), 2) for v in np.percentile(per_image, [10, 25, 50, 75, 90]))
    return {"median_px": median, "p10_px": p10, "p25_px": p25, "p75_px": p75, "p90_px": p90,
            "images": len(per_image), "source": source}


#: Which training sizes an image's objects may have and be left at their own resolution: the 10th to 90th
#: percentile of the training images' median diameters ("p10-p90"), the 25th to 75th ("p25-p75"), or none (every
#: image is brought to the training median). Chosen on the DSB2018 validation split: mean F1 over the four
#: magnifications 0.870 (p25-p75), 0.869 (none), 0.866 (p10-p90), with PICK "max" (docs/benchmarks.md).
KEEP_RANGES = {"p10-p90": ("p10_px", "p90_px"), "p25-p75": ("p25_px", "p75_px"), "none": None}
KEEP = "p25-p75"


def keep_range(sizes: dict, keep: str = KEEP) -> tuple[float, float] | None:
    """The diameters (px) left at their own resolution (:data:`KEEP_RANGES`), or None."""
    names = KEEP_RANGES[keep]
    return None if names is None else (sizes[names[0]], sizes[names[1]])


#: Where an image outside the kept range is brought: to the training median ("median") or to the nearer edge of the
#: kept range ("edge": the least change that makes the objects familiar). Chosen on the DSB2018 validation split.
TARGETS = ("median", "edge")
TARGET = "median"


def choose_scale(diameter: float, sizes: dict, keep: str = KEEP, target: str = TARGET) -> float:
    """Model pixels per image pixel for objects of this median ``diameter`` (image px): 1 inside the training
    sizes :data:`KEEP` names (``sizes``: :func:`training_sizes`), else the scale that gives them the training
    median or the nearer edge of that range (:data:`TARGET`); 1 when nothing was found."""
    band = keep_range(sizes, keep)
    if not math.isfinite(diameter) or diameter <= 0 or (band and band[0] <= diameter <= band[1]):
        return 1.0
    goal = sizes["median_px"] if target == "median" or band is None else band[0] if diameter < band[0] else band[1]
    lo, hi = SCALE_BOUNDS
    return float(min(max(goal / diameter, lo), hi))


#: How :func:`pick_diameter` goes from the passes to one diameter: "agree" (the finest pass whose objects the next
#: coarser pass confirms) or "max" (the largest of the passes). Chosen on the DSB2018 validation split: mean F1
#: 0.870 (max) against 0.867 (agree) with KEEP "p25-p75" (mean AP 0.543 against 0.546).
PICKS = ("agree", "max")
PICK = "max"
#: Two passes agree when their median diameters differ by less than this factor.
AGREE = 1.25
#: Objects a pass must find to count (a handful of merged blobs says little).
MIN_OBJECTS = 5


@dataclass(frozen=True)
class SizeEstimate:
    """What ``scale: auto`` found: the scale chosen, the objects' median diameter (image px) it went by and how many
    objects that pass found, the compartment measured, the model's training sizes, the range kept as it is
    (:data:`KEEP`), and every pass made: {model pixels per image pixel: [median diameter in image px, objects]}."""

    scale: float
    diameter_px: float
    objects: int
    compartment: str
    sizes: dict
    keep: str = KEEP
    passes: dict = field(default_factory=dict)
    pick: str = PICK

    def describe(self) -> str:
        band = keep_range(self.sizes, self.keep)
        seen = (f"{band[0]:g}-{band[1]:g} px" if band else "none kept") + f", median {self.sizes['median_px']:g} px"
        if not self.objects:
            return f"scale 1: no {self.compartment} objects found to measure"
        found = f"{self.compartment} objects of median diameter {self.diameter_px:.1f} px"
        tried = ", ".join(f"{s:g}: {d:.1f} px ({n})" for s, (d, n) in sorted(self.passes.items()) if n)
        where = "within" if self.scale == 1.0 else "outside"
        return (f"scale {self.scale:.3g}: {found}, {where} the model's training sizes ({seen}); "
                f"passes at scale {tried}")

    def as_dict(self) -> dict:
        return {"scale": self.scale, "diameter_px": None if not self.objects else round(self.diameter_px, 3),
                "objects": self.objects, "compartment": self.compartment, "model_sizes": self.sizes,
                "keep": self.keep, "pick": self.pick, "passes": {f"{s:g}": [None if not n else round(d, 3), n]
                                              for s, (d, n) in sorted(self.passes.items())},
                "note": self.describe()}


def model_sizes(spec) -> tuple[str, dict]:
    """The compartment ``auto`` measures (nuclear where the model has it) and its training sizes; a clear error
    for a model that records none."""
    comp = "nuclear" if "nuclear" in spec.compartments else spec.compartments[0]
    sizes = (spec.object_sizes or {}).get(comp)
    if not sizes:
        raise ValueError(f"scale auto: model {spec.name} records no training object sizes (object_sizes in its "
                         f"model.json; `cellscale train` writes them); give the sample a number as its scale")
    return comp, sizes


def default_scale(scale, timelapse: bool, spec, setting):
    """A sample's scale where its sheet (or ``--scale``) gives none (``scale`` None; a given one is returned as it
    is). A time-lapse takes ``setting`` (config ``segment.timelapse_scale``: auto or a number): its nuclei are
    measured by default, which carries to movies of other magnifications (docs/benchmarks.md). Not where the model
    (``spec``, a :class:`~cellscale.segment.model.ModelSpec` or None) declares a pixel size, as then the pixel sizes
    set the scale, nor auto where it records no training sizes (:func:`model_sizes`: a whole-cell model): None, as
    for a still image (from the pixel sizes, else 1)."""
    if scale is not None or not timelapse or spec is None or spec.pixel_size_um:
        return scale
    setting = parse_scale(setting)
    if setting == AUTO:
        try:
            model_sizes(spec)
        except ValueError:
            return None
    return setting


def size_crop(shape, scale: float = 1.0) -> tuple[int, int, int, int, int, Edges]:
    """The frame and central crop a pass at ``scale`` (model pixels per image pixel) segments, (t, y0, y1, x0, x1):
    at most :data:`SIZE_CROP` px a side in image and in model pixels; and which crop edges cut the image (objects
    touching them are not measured). ``shape``: the image's (T, C, Y, X)."""
    t, _, h, w = shape
    edge = max(64, int(SIZE_CROP / max(scale, 1.0)))
    ch, cw = min(h, edge), min(w, edge)
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    cut = (y0 > 0, y0 + ch < h, x0 > 0, x0 + cw < w)
    return t // 2, y0, y0 + ch, x0, x0 + cw, cut


def search_scales(measure, sizes: dict, shape) -> dict:
    """The passes of ``scale: auto``: ``measure(scale)`` -> (median diameter in image px, objects) of the objects
    the model finds at that scale. First at the image's own resolution; then, where those objects are smaller than
    small training objects (``p10_px``), at 2, 4, 8 until the model sees them at least that large; else at 1/2,
    1/4, ... while it still does. (A model shown nuclei far larger than it was trained on cuts them into pieces of
    about its training size, so the first pass alone would take the pieces for nuclei: coarser passes see them
    whole.) ``shape``: the image's. Returns {scale: (diameter, objects)}."""
    small = sizes["p10_px"]
    passes = {1.0: measure(1.0)}
    d, n = passes[1.0]
    if n and d < small:
        for scale in (2.0, 4.0, 8.0):
            passes[scale] = measure(scale)
            d, n = passes[scale]
            if not n or d * scale >= small:
                break
    elif n:
        scale = 0.5
        while scale >= SCALE_BOUNDS[0] and min(shape[-2:]) * scale >= 32:  # (a pass of fewer pixels sees nothing)
            passes[scale] = measure(scale)
            d, n = passes[scale]
            if not n or d * scale < small:
                break
            scale /= 2
    return passes


def pick_diameter(passes: dict, sizes: dict, pick: str = PICK) -> tuple[float, int]:
    """The objects' median diameter (image px) and number, from the passes (:func:`search_scales`).

    Only passes that found :data:`MIN_OBJECTS` objects, which the model saw at least as large as small training
    objects (``p10_px``), count: the others missed small objects or merged them. ``agree``: the finest such pass
    whose diameter the next coarser one confirms (within :data:`AGREE`): a model cuts nuclei far larger than it
    knows into pieces whose size changes with the scale, while whole nuclei keep theirs; with no two passes
    agreeing, the finest pass that counts. ``max``: the largest diameter of the passes that count. With no pass
    counting, the first pass's.
    """
    seen = sorted(((s, d, n) for s, (d, n) in passes.items()
                   if n >= MIN_OBJECTS and d * s >= sizes["p10_px"]), reverse=True)  # finest first
    if not seen:
        return passes[1.0]
    if pick == "max":
        return max((d, n) for _, d, n in seen)
    for (s1, d1, n1), (s2, d2, _) in zip(seen, seen[1:]):
        if s1 == 2 * s2 and max(d1, d2) < AGREE * min(d1, d2):
            return d1, n1
    return seen[0][1], seen[0][2]
