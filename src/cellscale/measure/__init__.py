"""Per-cell measurements compatible with MCMICRO / MCQuant feature tables.

:func:`measure_cells` gives the MCQuant columns of one label image with the
values of :func:`skimage.measure.regionprops`; :func:`measure_compartments`
adds nuclear / whole-cell / cytoplasm compartments, frames and nucleus <->
cell links, and measures large images block by block (zarr / OME-TIFF tiles)
with the same results; :func:`write_table` writes CSV, Parquet and AnnData
.h5ad; :func:`mcquant_tables` splits a table into MCQuant's one table per
image and mask (SCIMAP, cylinter); :func:`concat_tables` stacks samples into
a run-level table, which :func:`run_template`, :func:`run_parts` and
:class:`TableWriter` write part by part in bounded memory instead.

Modules: :mod:`.sums` (per-block partial sums), :mod:`.hull` (exact convex
hull pixel counts), :mod:`.table` (finishing sums into columns), :mod:`.stats`
(optional order statistics), :mod:`.blocks` (block reads),
:mod:`.compartments`, :mod:`.export`.
"""

from cellscale.measure.blocks import RegionArray
from cellscale.measure.compartments import COMPARTMENTS, measure_compartments
from cellscale.measure.export import (
           TableWriter,
           categories_of,
           concat_tables,
           marker_columns,
           mcquant_tables,
           run_columns,
           run_parts,
           run_template,
           string_columns,
           table_anndata,
           write_h5ad,
           write_table,
)
from cellscale.measure.stats import EXTRA_STATS
from cellscale.measure.table import SHAPE_COLUMNS, measure_cells

__all__ = ["SHAPE_COLUMNS", "EXTRA_STATS", "COMPARTMENTS", "measure_cells", "measure_compartments",
           "write_table", "write_h5ad", "concat_tables", "marker_columns", "RegionArray", "TableWriter",
           "run_columns", "run_template", "run_parts", "string_columns", "categories_of", "table_anndata",
           "mcquant_tables"]
