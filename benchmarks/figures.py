"""The pictures in the README and docs/outputs.md, drawn from a run's outputs with the libraries users open them with.

    python benchmarks/figures.py spatialdata results/spatialdata/batches/fawssopvzm.zarr docs/img/spatialdata-demo.png \
        --coordinate-system synthetic_tissue
    python benchmarks/figures.py slide RUN/results/ngff/slide.ome.zarr docs/img/gigapixel-region.png

- ``spatialdata``: a SpatialData store plotted with spatialdata-plot (``pip install "cellscale[figures]"``): the
  image's first three channels, and the whole cells coloured by a marker's mean from the linked table, with the
  nuclear outlines (the shapes) on top. A batch's store holds many images: ``--coordinate-system SAMPLE`` picks one
  (``results/index.tsv``, column ``spatialdata_coordinate_system``).
- ``slide``: an OME-Zarr image with labels (the ome-zarr reader): the whole slide from a low pyramid level, and a
  full-resolution region at its centre with the labels' outlines; only those two pieces are read. A time-lapse's
  store (``t, c, y, x``, as the workflow writes a movie's): one frame, ``--frame F`` (default the first).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def spatialdata_figure(store: Path, out: Path, marker: str | None = None, system: str = "global") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import spatialdata
    import spatialdata_plot  # noqa: F401 (registers sdata.pl)

    sdata = spatialdata.read_zarr(store).filter_by_coordinate_system(system)
    prefix = "" if system == "global" else f"{system}_"  # a batch's store: the sample's elements
    image, nuclear_outlines = f"{prefix}image", f"{prefix}nuclear_boundaries"
    channels = [str(c) for c in sdata.images[image]["scale0"]["image"].coords["c"].values]
    table = sdata.tables["table"]
    marker = marker or (channels[2] if len(channels) > 2 else channels[0])
    cells = f"{prefix}whole_cell" if f"{prefix}whole_cell" in sdata.labels else f"{prefix}nuclear"
    fig, axes = plt.subplots(1, 2, figsize=(13, 6.5))
    shown = channels[:3]
    sdata.pl.render_images(image, channel=shown, palette=["blue", "green", "red"][:len(shown)]).pl.show(
        ax=axes[0], title=f"image ({', '.join(shown)})", coordinate_systems=system)
    view = sdata.pl.render_images(image, channel=channels[0], cmap="gray").pl.render_labels(
        cells, table_name="table", color=marker, fill_alpha=0.7)
    if nuclear_outlines in sdata.shapes:
        view = view.pl.render_shapes(nuclear_outlines, fill_alpha=0.0, outline_alpha=1.0, outline_color="white",
                                     outline_width=0.4)
    kind = cells.removeprefix(prefix).replace("_", " ")
    view.pl.show(ax=axes[1], title=f"{kind} labels coloured by mean {marker} ({table.n_obs} table rows)",
                 coordinate_systems=system)
    fig.savefig(out, dpi=90, bbox_inches="tight")


def slide_figure(store: Path, out: Path, region: int = 384, frame: int | None = None) -> None:
    """Raises ValueError naming ``store`` when it is no OME-Zarr image (``c, y, x``, or a time-lapse's ``t, c, y, x``)
    or ``frame`` is not one of its frames."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Reader
    from skimage.segmentation import find_boundaries

    location = parse_url(str(store))
    if location is None:
        raise ValueError(f"{store}: not an OME-Zarr store (no such folder, or no zarr metadata in it)")
    nodes = [n for n in Reader(location)() if n.data]
    image = next((n for n in nodes if not any(isinstance(s, Label) for s in n.specs)), None)
    if image is None:
        raise ValueError(f"{store}: no OME-Zarr image in it (expected an image with labels, as results/ngff/ holds)")
    axes = "".join(a["name"] if isinstance(a, dict) else a for a in image.metadata.get("axes", "cyx"))
    if axes not in ("cyx", "tcyx"):
        raise ValueError(f"{store}: image axes {axes}: expected cyx (a still image) or tcyx (a time-lapse)")
    n_frames = image.data[0].shape[0] if axes == "tcyx" else None
    if n_frames is None and frame is not None:
        raise ValueError(f"{store}: --frame {frame}: the image is not a time-lapse (axes {axes})")
    frame = 0 if n_frames is not None and frame is None else frame
    if n_frames is not None and not 0 <= frame < n_frames:
        raise ValueError(f"{store}: --frame {frame}: the time-lapse has {n_frames} frame(s), 0 to {n_frames - 1}")

    def still(array):   # a time-lapse's frame, (c,) y, x
        return array if frame is None else array[frame]

    labels = {n.metadata["name"]: n for n in nodes if any(isinstance(s, Label) for s in n.specs)}
    full = still(image.data[0])
    h, w = full.shape[-2:]
    level = still(next((lv for lv in image.data if max(lv.shape[-2:]) <= 2048), image.data[-1]))
    factor = h / level.shape[-2]

    def rgb(channels: np.ndarray) -> np.ndarray:
        out = np.zeros((*channels.shape[1:], 3))
        for c, colour in zip(range(min(2, channels.shape[0])), ([0.2, 0.4, 1.0], [0.1, 1.0, 0.3])):
            x = channels[c].astype(np.float64)
            lo, hi = np.percentile(x, [1, 99.7])
            out += np.clip((x - lo) / max(hi - lo, 1e-9), 0, 1)[..., None] * colour
        return np.clip(out, 0, 1)

    overview = rgb(np.asarray(level))
    y0, x0 = h // 2 - region // 2, w // 2 - region // 2
    crop = rgb(np.asarray(full[:, y0:y0 + region, x0:x0 + region]))
    for name, colour in (("whole_cell", [1.0, 1.0, 0.2]), ("nuclear", [1.0, 0.3, 0.3])):
        if name in labels:
            lab = np.asarray(still(labels[name].data[0])[y0:y0 + region, x0:x0 + region])
            crop[find_boundaries(lab, mode="thick")] = colour
    fig, axes = plt.subplots(1, 2, figsize=(14, 7))
    axes[0].imshow(overview, extent=(0, w, h, 0))
    axes[0].add_patch(plt.Rectangle((x0, y0), region, region, fill=False, edgecolor="white", linewidth=1.5))
    when = "" if frame is None else f", frame {frame} of {n_frames}"
    axes[0].set_title(f"{h:,} x {w:,} px ({h * w / 1e9:.2f} Gpx){when}, pyramid level 1/{factor:.0f}")
    axes[1].imshow(crop, extent=(x0, x0 + region, y0 + region, y0))
    axes[1].set_title(f"full resolution, {region} x {region} px: whole-cell (yellow) and nuclear (red) labels")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100, bbox_inches="tight")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("kind", choices=("spatialdata", "slide"))
    p.add_argument("store", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--marker", default=None, help="spatialdata: the channel whose mean colours the cells")
    p.add_argument("--coordinate-system", default="global",
                   help="spatialdata: the image to draw (in a batch's store: its sample's name)")
    p.add_argument("--frame", type=int, default=None, help="slide: a time-lapse's frame to draw (default: 0)")
    a = p.parse_args(argv)
    if a.kind == "spatialdata":
        a.out.parent.mkdir(parents=True, exist_ok=True)
        spatialdata_figure(a.store, a.out, a.marker, a.coordinate_system)
    else:
        try:
            slide_figure(a.store, a.out, frame=a.frame)
        except ValueError as err:   # a store it cannot draw: one line naming it, no traceback, no figure
            print(f"{p.prog} slide: error: {err}", file=sys.stderr)
            return 2
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
