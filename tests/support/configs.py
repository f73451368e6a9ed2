"""Configurations for the settings tests: the schema, the typed settings of each section, the tracking fields."""

from __future__ import annotations

from cellscale.segment.settings import PostprocessSettings, SegmentSettings, TilingSettings
from cellscale.steps.measure import MeasureSettings
from cellscale.track.config import TrackConfig

from . import ROOT

SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
SETTINGS = {"tiling": TilingSettings, "segment": SegmentSettings, "postprocess": PostprocessSettings,
            "measure": MeasureSettings, "track": TrackConfig}
TRACK_FIELDS = ["solver", "max_distance", "max_gap", "divisions", "birth_cost", "border_factor", "iou_weight",
                "size_weight", "intensity_weight", "gap_cost", "division_cost", "division_distance",
                "min_division_area", "touch_cost", "min_cycle_frames", "window", "ilp_backend", "time_limit",
                "costs", "auto_crowding", "scorer"]


def minimal_config(**sections) -> dict:
    return {"samples": "config/samples.tsv", "models": {"nuclear": "models/nuclear", "tissue": "models/tissue"},
            **sections}


# ---------------------------------------------------------------------------------------------------------------
# the schema: packaged, linked from workflow/schemas, closed
# ---------------------------------------------------------------------------------------------------------------
