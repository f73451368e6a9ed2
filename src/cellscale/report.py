"""Quality-control pictures and summaries: outlines on the image, lineage trees."""

from __future__ import annotations

import numpy as np
import pandas as pd
from skimage.segmentation import find_boundaries

from cellscale.io import atomic_path
from cellscale.track.lineage import division_parents

OUTLINE_COLOURS = {"nuclear": (0.2, 1.0, 0.2), "whole_cell": (1.0, 0.3, 0.9)}


def display_image(channels: np.ndarray) -> np.ndarray:
    """A (Y, X, 3) float RGB preview of (C, Y, X) channels (first channel grey, or RGB if C == 3)."""
    def stretch(a):
        lo, hi = np.percentile(a, [1, 99.8])
        return np.clip((a.astype(np.float32) - lo) / max(hi - lo, 1e-6), 0, 1)

    if channels.shape[0] == 3:
        return np.stack([stretch(c) for c in channels], axis=-1)
    grey = stretch(channels[0])
    return np.stack([grey] * 3, axis=-1)


def overlay(channels: np.ndarray, labels: dict[str, np.ndarray], max_px: int = 1024) -> np.ndarray:
    """RGB uint8 (Y', X', 3): outlines of each compartment's labels on the image, downsampled to ``max_px``."""
    step = max(1, int(np.ceil(max(channels.shape[-2:]) / max_px)))
    rgb = display_image(channels[:, ::step, ::step])
    for comp, lab in labels.items():
        edges = find_boundaries(lab[::step, ::step], mode="inner")
        rgb[edges] = OUTLINE_COLOURS.get(comp, (1.0, 1.0, 0.0))
    return (rgb * 255).astype(np.uint8)


def track_colours(track_ids) -> np.ndarray:
    """An RGB colour in [0, 1] for each track id (shape ``track_ids.shape + (3,)``), the same for an id in every
    picture: hues a golden ratio of the circle apart from one id to the next (neighbouring ids far apart)."""
    from skimage.color import hsv2rgb

    ids = np.asarray(track_ids, dtype=np.float64)
    hsv = np.stack([(ids * 0.618033988749895) % 1.0, np.full(ids.shape, 0.9), np.ones(ids.shape)], axis=-1)
    return hsv2rgb(hsv.reshape(-1, 1, 3)).reshape(ids.shape + (3,))


def tracks_overlay(channels: np.ndarray, tracked: np.ndarray, opacity: float = 0.55) -> np.ndarray:
    """RGB float (Y, X, 3): ``channels`` (C, Y, X) as :func:`display_image` shows them, each cell of ``tracked``
    ((Y, X) track ids, 0: none) filled in its track's colour (:func:`track_colours`, at ``opacity`` over a grey
    image: the colour's hue) and outlined in it."""
    rgb = display_image(channels)
    ids, inverse = np.unique(tracked, return_inverse=True)
    colours = track_colours(ids)[inverse.reshape(tracked.shape)]
    cells = tracked > 0
    rgb[cells] = (1 - opacity) * rgb[cells] + opacity * colours[cells]
    edges = find_boundaries(tracked, mode="inner")
    rgb[edges] = colours[edges]
    return rgb


def montage(path, panels: list[tuple[str, np.ndarray]], title: tuple[str, str],
            notes: list[list[tuple[float, float, str]]], rings: list[list[tuple[float, float, float]]],
            columns: int = 3) -> list[tuple[int, int]]:
    """One PNG of equal-sized RGB ``panels`` (name, (h, w, 3)) in rows of ``columns``, each drawn pixel for pixel
    under its name, with ``notes`` (per panel: y, x, text, written up and right of y, x) and ``rings`` (per panel:
    y, x, radius) on it, panel pixels as coordinates; ``title``: a line and a smaller one (a legend) above them.
    Returns each panel's top left pixel (row, column) in the PNG."""
    plt = _pyplot()
    from matplotlib.patches import Circle

    h, w = panels[0][1].shape[:2]
    header, name_px, gap, dpi = 40, 16, 6, 100
    columns = min(columns, len(panels))
    rows = -(-len(panels) // columns)
    content = columns * (w + gap) + gap
    width, height = max(content, 560), header + rows * (name_px + h + gap)   # room for the title's lines
    fig = plt.figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    fig.text(0.5, 1 - 4 / height, title[0], ha="center", va="top", fontsize=9)
    fig.text(0.5, 1 - 20 / height, title[1], ha="center", va="top", fontsize=7)
    corners = []
    for k, (name, rgb) in enumerate(panels):
        top = header + (k // columns) * (name_px + h + gap) + name_px
        left = (width - content) // 2 + gap + (k % columns) * (w + gap)
        corners.append((top, left))
        ax = fig.add_axes((left / width, 1 - (top + h) / height, w / width, h / height))
        ax.imshow(np.clip(rgb, 0, 1), interpolation="nearest")
        ax.set_axis_off()
        fig.text((left + w / 2) / width, 1 - (top - 2) / height, name, ha="center", va="bottom", fontsize=8)
        for y, x, text in notes[k]:
            ax.text(x, y, text, color="white", fontsize=7, ha="left", va="bottom", clip_on=True)
        for y, x, radius in rings[k]:
            ax.add_patch(Circle((x, y), radius, fill=False, edgecolor="white", linewidth=1.2))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)
    return corners


def save_png(path, rgb: np.ndarray) -> None:
    import imageio.v3 as iio

    with atomic_path(path) as tmp:
        iio.imwrite(tmp, rgb, extension=".png")


def summarize_sample(sample: str, labels: dict[str, np.ndarray], table: pd.DataFrame) -> dict:
    """Counts and size statistics per compartment (per frame for time-lapse; a median of no objects is None, an
    empty cell of summary.tsv); ``labels``: compartment -> its (Y, X) or (T, Y, X) labels, an array or a lazy view
    (only its shape is used)."""
    out = {"sample": sample}
    for comp, lab in labels.items():
        rows = table[table["compartment"] == comp] if "compartment" in table else table
        out[f"{comp}_cells"] = int(len(rows))
        out[f"{comp}_median_area"] = float(rows["Area"].median()) if len(rows) else None  # none: NaN, not 0
        if lab.ndim == 3:
            out["frames"] = int(lab.shape[0])
    return out


def lineage_plot(path, tracks: pd.DataFrame, title: str = "") -> None:
    """Lineage tree: one horizontal line per track over its frames (a track of one frame: a dot), a division's
    daughters joined to their mother in red, a gap of missing frames (a parent with one child) bridged in grey."""
    plt = _pyplot()

    spans = tracks.groupby("track_id").agg(start=("frame", "min"), end=("frame", "max"),
                                           parent=("parent_track_id", "first")).reset_index()
    order = _tree_order(spans)
    row = {tid: i for i, tid in enumerate(order)}
    dividing = division_parents(tracks)
    ends = dict(zip(spans.track_id, spans.end))
    fig, ax = plt.subplots(figsize=(8, max(3, 0.18 * len(order) + 1)))
    for s in spans.itertuples():
        ax.plot([s.start, s.end], [row[s.track_id]] * 2, lw=2, color="tab:blue", marker="." if s.start == s.end
                else None)
        if s.parent and s.parent in row:
            division = s.parent in dividing
            ax.plot([ends[s.parent], s.start], [row[s.parent], row[s.track_id]], lw=1,
                    color="tab:red" if division else "0.6", linestyle="-" if division else ":")
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    ax.legend([Line2D([], [], color="tab:blue", lw=2), Line2D([], [], color="tab:red", lw=1),
               Line2D([], [], color="0.6", lw=1, linestyle=":")],
              ["a track", "a division", "a gap of missing frames bridged"], fontsize=7, loc="upper left",
              bbox_to_anchor=(1.01, 1.0))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("frame")
    ax.set_ylabel("track")
    ax.set_yticks([])
    ax.set_title(title or f"{len(order)} tracks, {len(dividing)} divisions")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def _tree_order(spans: pd.DataFrame) -> list[int]:
    """Track ids ordered depth-first so daughters sit next to their parent."""
    children: dict[int, list[int]] = {}
    for s in spans.itertuples():
        children.setdefault(int(s.parent or 0), []).append(int(s.track_id))
    known = set(spans.track_id.astype(int))
    roots = [t for p, kids in children.items() if p == 0 or p not in known for t in kids]
    order, stack = [], sorted(roots, reverse=True)
    while stack:
        tid = stack.pop()
        order.append(tid)
        stack.extend(sorted(children.get(tid, []), reverse=True))
    return order


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def overlay_grid(path, tiles: list[tuple[str, np.ndarray]], title: str, columns: int = 4) -> None:
    """One PNG of several (name, RGB overlay) pictures in a grid, each titled with its name."""
    plt = _pyplot()
    rows = max(1, -(-len(tiles) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3 * rows + 0.4), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (name, rgb) in zip(axes.ravel(), tiles):
        ax.imshow(rgb)
        ax.set_title(name, fontsize=8)
    if not tiles:
        axes[0, 0].text(0, 0.5, "no batched image succeeded", fontsize=10)
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)


def shared_bins(groups: list[np.ndarray]) -> np.ndarray:
    """Bin edges of equal width over every group's values, so the groups' bars are drawn alike (one value alone
    gets a bin as wide as the others', not a range of its own one unit wide); about a quarter as many bins as
    values, 5 to 50."""
    values = np.concatenate([np.asarray(g, float) for g in groups] or [np.zeros(0)])
    if not len(values):
        return np.linspace(0.0, 1.0, 6)
    lo, hi = float(values.min()), float(values.max())
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, min(50, max(5, len(values) // 4)) + 1)


def distributions_plot(path, fields: pd.DataFrame) -> None:
    """Histograms over images (one row of ``fields`` each): cells per image and median cell area, per
    compartment; the title counts the images that failed."""
    plt = _pyplot()
    ok = fields[fields["status"] == "ok"]
    comps = [c[: -len("_cells")] for c in fields.columns if c.endswith("_cells")]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for ax, stat in zip(axes, ("_cells", "_median_area")):
        values = {comp: ok[comp + stat].dropna().to_numpy(float) for comp in comps}
        edges = shared_bins(list(values.values()))
        for comp, v in values.items():
            if len(v):
                ax.hist(v, bins=edges, alpha=0.6, label=comp.replace("_", " "))
    axes[0].set_xlabel("cells per image")
    axes[1].set_xlabel("median cell area (pixels)")
    for ax in axes:
        ax.set_ylabel("images")
        if comps:
            ax.legend()
    failed = int((fields["status"] != "ok").sum())
    fig.suptitle(f"{len(ok)} images segmented" + (f", {failed} failed (results/errors.tsv)" if failed else ""))
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


_TABLE_STYLE = ("body{font-family:sans-serif;font-size:13px;margin:12px}table{border-collapse:collapse;margin-bottom:"
                "18px}th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}th{background:#f2f2f2}"
                "td:first-child,th:first-child{text-align:left}h2{font-size:15px}")


def html_tables(path, tables: list[tuple[str, pd.DataFrame]], title: str) -> None:
    """A self-contained HTML page of tables (heading, frame), for the Snakemake report to show inline: it offers a
    TSV only as a download. Empty values are blank; a table without rows says so."""
    import html

    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{_TABLE_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"]
    for heading, frame in tables:
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        frame = frame.astype({c: float for c in frame.columns if pd.api.types.is_integer_dtype(frame[c])
                              and frame[c].isna().any()})  # a nullable integer's NA is blank too, not <NA>
        parts.append(frame.to_html(index=False, na_rep="", float_format=lambda v: f"{v:.6g}", border=0)
                     if len(frame) else "<p>none</p>")
    parts.append("</body></html>\n")
    with atomic_path(path) as tmp:
        tmp.write_text("".join(parts), encoding="utf-8")
