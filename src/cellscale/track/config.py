"""Tracking parameters: one typed object, validated once at the edge.

:class:`TrackConfig` holds every parameter of :func:`cellscale.track.link`.
``None`` means "estimate from the data" (``max_distance``) or "derive from
another parameter" (``division_distance``, ``window``). All costs are in the
same unit: starting or ending a track in the middle of the field of view
costs ``birth_cost``; a link costs about 1 when the displacement equals
``max_distance``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import ClassVar

from cellscale.settings import Settings, choices, default, from_section

__all__ = ["TrackConfig", "SOLVERS"]

SOLVERS = tuple(choices("track", "solver"))  # ("lap", "ilp")
ILP_BACKENDS = tuple(choices("track", "ilp_backend"))  # ("highs", "cbc")
COSTS = tuple(choices("track", "costs"))  # ("rules", "learned")


@dataclass(frozen=True)
class TrackConfig(Settings):
    """Parameters of the tracker (see :func:`cellscale.track.link`): the config section ``track``.

    The defaults are the config schema's (``cellscale/schemas/config.schema.yaml``), their one source.

    Attributes
    ----------
    solver:
        ``"lap"``: frame-to-frame linear assignment, then divisions and gap
        closing (fast). ``"ilp"``: one integer program over a window of
        frames choosing links, gaps, appearances, disappearances and
        divisions jointly (most accurate).
    max_distance:
        Largest centroid displacement (px) between consecutive frames;
        ``None``: estimated from the data.
    max_gap:
        Largest number of consecutive frames a cell may be missing (0: none).
    divisions:
        Allow divisions (one mother, two daughters in the next frame).
    birth_cost:
        Cost of a track start or end away from the image border, first and
        last frame (where they are free).
    border_factor:
        Starts and ends of objects touching the border zone cost
        ``border_factor * birth_cost`` (cells enter and leave there).
    iou_weight, size_weight, intensity_weight:
        Weights of the link cost terms ``1 - IoU`` (needs labels),
        relative area change and relative mean-intensity change (needs a
        ``mean_intensity`` column).
    gap_cost:
        Extra cost per missing frame of a gap-closing link.
    division_cost:
        Base cost of a division (added to its geometric terms).
    division_distance:
        Largest mother-to-daughter distance (px); ``None``:
        ``max_distance + 2 * mother radius``.
    min_division_area:
        Mothers and daughters of a division are at least this fraction of
        the typical object area (the area-weighted median): smaller objects
        are segmentation fragments, not dividing cells.
    touch_cost:
        Extra cost of a division whose daughters touch (with labels): true
        daughters are apart one frame after mitosis, the two halves of an
        over-segmented nucleus are not.
    min_cycle_frames:
        A cell born by division, or appearing after the first frame, divides
        only after living this many frames (1: no constraint; 2: not in the
        frame it was born in; 3, ``ilp`` only: not in its first two frames).
    window:
        Frames per integer program (``ilp``); ``None``: all frames when the
        problem is small, else windows of about 20,000 detections.
    ilp_backend:
        ``"highs"`` (HiGHS through scipy.optimize.milp) or ``"cbc"`` (CBC
        through PuLP).
    time_limit:
        Seconds per integer program before the best solution found is used.
    costs:
        ``"auto"``: ``"learned"`` when ``labels`` are given and the objects are
        packed (:func:`cellscale.track.costs.crowding` below ``auto_crowding``),
        else ``"rules"``; ``link`` records the choice (``costs_used``).
        ``"rules"``: the weighted terms above. ``"learned"``: consecutive-frame
        links and divisions cost ``-log p`` of the trained scorer
        (:mod:`cellscale.track.scorer`, features of
        :mod:`cellscale.track.features`); needs the label images.
    auto_crowding:
        The crowding below which ``costs="auto"`` takes the learned costs.
    scorer:
        Folder of the learned scorer; ``None``: the shipped
        ``models/track-scorer``.
    """

    SECTION: ClassVar[str] = "track"
    solver: str = default("track", "solver")
    max_distance: float | None = default("track", "max_distance")
    max_gap: int = default("track", "max_gap")
    divisions: bool = default("track", "divisions")
    birth_cost: float = default("track", "birth_cost")
    border_factor: float = default("track", "border_factor")
    iou_weight: float = default("track", "iou_weight")
    size_weight: float = default("track", "size_weight")
    intensity_weight: float = default("track", "intensity_weight")
    gap_cost: float = default("track", "gap_cost")
    division_cost: float = default("track", "division_cost")
    division_distance: float | None = default("track", "division_distance")
    min_division_area: float = default("track", "min_division_area")
    touch_cost: float = default("track", "touch_cost")
    min_cycle_frames: int = default("track", "min_cycle_frames")
    window: int | None = default("track", "window")
    ilp_backend: str = default("track", "ilp_backend")
    time_limit: float = default("track", "time_limit")
    costs: str = default("track", "costs")
    auto_crowding: float = default("track", "auto_crowding")
    scorer: str | None = default("track", "scorer")

    def __post_init__(self) -> None:
        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {SOLVERS}, got {self.solver!r}")
        if self.costs not in COSTS:
            raise ValueError(f"costs must be one of {COSTS}, got {self.costs!r}")
        if self.ilp_backend not in ILP_BACKENDS:
            raise ValueError(f"ilp_backend must be one of {ILP_BACKENDS}, got {self.ilp_backend!r}")
        if self.max_distance is not None and not (
                isinstance(self.max_distance, (int, float)) and self.max_distance > 0
                and math.isfinite(self.max_distance)):
            raise ValueError(f"max_distance must be a positive number, got {self.max_distance}")
        if self.max_gap is None or int(self.max_gap) != self.max_gap or self.max_gap < 0:
            raise ValueError(f"max_gap must be an integer >= 0, got {self.max_gap}")
        if not self.birth_cost > 0:
            raise ValueError(f"birth_cost must be > 0, got {self.birth_cost}")
        for name in ("border_factor", "iou_weight", "size_weight", "intensity_weight",
                     "gap_cost", "division_cost", "min_division_area", "touch_cost"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and v >= 0 and math.isfinite(v)):
                raise ValueError(f"{name} must be a number >= 0, got {v}")
        if self.division_distance is not None and not self.division_distance > 0:
            raise ValueError(f"division_distance must be > 0, got {self.division_distance}")
        if int(self.min_cycle_frames) != self.min_cycle_frames or not 1 <= self.min_cycle_frames <= 3:
            raise ValueError(f"min_cycle_frames must be 1, 2 or 3, got {self.min_cycle_frames}")
        if self.min_cycle_frames == 3 and self.solver != "ilp":   # lap's divisions keep at most 2 (track.lap)
            raise ValueError(f"min_cycle_frames 3 needs solver ilp (solver {self.solver} keeps a cell from dividing "
                             f"only in the frame it was born in, as 2 does): give solver ilp, or min_cycle_frames 2")
        if self.window is not None and (int(self.window) != self.window or self.window < 2):
            raise ValueError(f"window must be an integer >= 2, got {self.window}")
        if not self.time_limit > 0:
            raise ValueError(f"time_limit must be > 0, got {self.time_limit}")

    @classmethod
    def from_dict(cls, values: dict | None) -> "TrackConfig":
        """Build from a mapping (e.g. the ``track:`` section of the config);
        unknown keys are an error, naming them; missing ones take the schema's defaults."""
        return from_section(cls, cls.SECTION, values, noun="tracking parameter")

    def as_dict(self) -> dict:
        return asdict(self)
