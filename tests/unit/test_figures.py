"""benchmarks/figures.py slide: a still image's and a time-lapse's OME-Zarr store as the workflow writes them, and a
store it cannot draw named in one line."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from support import ROOT

pytest.importorskip("matplotlib")
pytest.importorskip("ome_zarr")


def _figures():
    spec = importlib.util.spec_from_file_location("figures", ROOT / "benchmarks" / "figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def movie(tmp_path_factory):
    """A 3-frame, 1-channel movie's store: a bright square that moves, labelled in each frame."""
    from cellscale.export.ngff import write_ngff

    image = np.zeros((3, 1, 400, 400), np.uint16)
    labels = np.zeros((3, 400, 400), np.uint32)
    for t in range(3):
        image[t, 0, 150 + 30 * t:190 + 30 * t, 180:220] = 1000
        labels[t, 150 + 30 * t:190 + 30 * t, 180:220] = 1
    path = tmp_path_factory.mktemp("ngff") / "movie.ome.zarr"
    write_ngff(path, image, {"nuclear": labels, "tracks": labels}, timelapse=True)
    return path


def test_slide_draws_a_frame_of_a_time_lapse(movie, tmp_path, capsys):
    import matplotlib.pyplot as plt

    figures = _figures()
    assert figures.main(["slide", str(movie), str(tmp_path / "first.png")]) == 0
    assert figures.main(["slide", str(movie), str(tmp_path / "last.png"), "--frame", "2"]) == 0
    first, last = plt.imread(tmp_path / "first.png"), plt.imread(tmp_path / "last.png")
    assert first.shape == last.shape and not np.array_equal(first, last)   # the square moved between them


@pytest.mark.parametrize("store,frame,message", [
    ("movie", "3", "{store}: --frame 3: the time-lapse has 3 frame(s), 0 to 2"),
    ("nothere.ome.zarr", None, "{store}: not an OME-Zarr store (no such folder, or no zarr metadata in it)"),
])
def test_slide_names_a_store_or_frame_it_cannot_draw(movie, tmp_path, capsys, store, frame, message):
    store = movie if store == "movie" else tmp_path / store
    out = tmp_path / "figure" / "slide.png"
    assert _figures().main(["slide", str(store), str(out), *(["--frame", frame] if frame else [])]) == 2
    err = capsys.readouterr().err   # one line, no traceback
    assert err.count("\n") == 1 and err.endswith(f" slide: error: {message.format(store=store)}\n")
    assert not out.parent.exists()
