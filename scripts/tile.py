"""Snakemake script of rule `tile`: cut a sample into normalised windows and shards."""

from cellscale.logs import step_log
from cellscale.segment.settings import TilingSettings
from cellscale.steps import staged_model
from cellscale.steps.tile import tile_sample

p = snakemake.params  # noqa: F821 (provided by Snakemake)
with step_log(snakemake.log[0], f"tile {p.sample}"):  # noqa: F821
    tile_sample(
        p.sample,
        snakemake.input.image or p.image,  # noqa: F821 (the sheet's path names a missing image)
        snakemake.output.tiles,  # noqa: F821
        roles=p.roles,
        model_dir=staged_model(snakemake.input, p.model),  # noqa: F821
        tiling=TilingSettings.from_dict(p.tiling),  # config["tiling"], its defaults filled in by the schema
        timelapse=p.timelapse,
        pixel_size_um=p.pixel_size,
        gamma=p.gamma,
        scale=p.scale,
    )
