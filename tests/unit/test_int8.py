"""The 8-bit copy of a model: built by `cellscale quantize`, chosen by precision 'auto', as accurate as float32."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from support import DEMO, MODELS

from cellscale.io import read_image
from cellscale.segment.image import segment_image
from cellscale.segment.metrics import summarize
from cellscale.segment.model import ModelSpec
from cellscale.segment.network import build_unet
from cellscale.segment.predictor import Predictor
from cellscale.train.quantize import export_int8


@pytest.mark.parametrize("name", ["nuclear", "tissue"])
def test_shipped_models_have_an_int8_copy(name, caplog):
    spec = ModelSpec.read(MODELS / name)
    assert spec.int8 and (MODELS / name / spec.int8["artifact"]).exists()
    assert "validation" in spec.int8["calibration"]  # never calibrated on test images
    with caplog.at_level("INFO", logger="cellscale"):
        assert Predictor(MODELS / name, precision="auto", augment="none").precision == "int8"
    assert f"runs {spec.int8['artifact']} (int8)" in caplog.text  # a job's log says which weights ran


def test_int8_segments_like_float32_on_bundled_images(nuclear_predictor):
    int8 = Predictor(MODELS / "nuclear", precision="int8", augment="none")
    root = DEMO / "dsb2018"
    ours, fast, agree = [], [], []
    for path in sorted((root / "images").glob("*.png")):
        raw = read_image(path)
        truth = read_image(root / "masks" / f"{path.stem}.tif")[0, 0]
        a = segment_image(nuclear_predictor, raw, tile=512)["nuclear"][0]
        b = segment_image(int8, raw, tile=512)["nuclear"][0]
        ours.append((truth, a))
        fast.append((truth, b))
        agree.append((a, b))
    assert summarize(agree)["f1"] > 0.95  # the same cells, found both ways
    assert abs(summarize(fast)["f1"] - summarize(ours)["f1"]) < 0.03


def test_int8_maps_are_close_to_float32(nuclear_predictor):
    rng = np.random.default_rng(0)
    raw = read_image(sorted((DEMO / "dsb2018" / "images").glob("*.png"))[0])
    tiles = np.zeros((2, 1, 256, 256), np.float32)
    img = raw[0, 0].astype(np.float32) if raw.shape[1] == 1 else raw[0].mean(0)
    img = (img - img.min()) / (np.ptp(img) + 1e-6)
    tiles[0, 0] = img[:256, :256]
    tiles[1, 0] = rng.random((256, 256)) * 0.1
    a = nuclear_predictor.predict(tiles)
    b = Predictor(MODELS / "nuclear", precision="int8", augment="none").predict(tiles)
    assert a.shape == b.shape == (2, 4, 256, 256)
    assert np.abs(a - b).mean() < 0.02


def test_precision_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="unknown precision"):
        Predictor(MODELS / "nuclear", precision="int4", augment="none")
    folder = tmp_path / "m"
    shutil.copytree(MODELS / "nuclear", folder)
    spec = json.loads((folder / "model.json").read_text())
    spec["int8"] = None
    (folder / "model.json").write_text(json.dumps(spec))
    assert Predictor(folder, precision="auto", augment="none").precision == "float32"
    with pytest.raises(ValueError, match="cellscale quantize"):
        Predictor(folder, precision="int8", augment="none")
    int8 = Predictor(MODELS / "nuclear", precision="int8", augment="none")
    window = int8.spec.int8["window"]
    with pytest.raises(ValueError, match="tiling.tile"):
        int8.predict(np.zeros((1, 1, window + 16, window + 16), np.float32))


def test_quantize_a_model_and_run_it(tmp_path):
    spec = ModelSpec(name="tiny", inputs=["nuclear"], compartments=["nuclear"], base_filters=4, depth=2,
                     tile_multiple=4)
    net = build_unet(spec)
    net.save(tmp_path / "model.keras")
    spec.write(tmp_path)
    rng = np.random.default_rng(1)
    images = [rng.random((1, 80, 96)).astype(np.float32) for _ in range(3)]
    path = export_int8(tmp_path, images, "random test images (validation)", window=64)
    assert path.exists()
    written = ModelSpec.read(tmp_path)
    assert written.int8["window"] == 64 and "3 images" in written.int8["calibration"]
    tiles = rng.random((3, 1, 48, 64)).astype(np.float32)  # smaller than the window: padded
    fast = Predictor(tmp_path, precision="auto", augment="none")
    assert fast.precision == "int8"
    a = Predictor(tmp_path, precision="float32", augment="none").predict(tiles)
    b = fast.predict(tiles)
    assert b.shape == a.shape
    assert np.abs(a - b).mean() < 0.05


def test_auto_keeps_float32_where_a_gpu_is_visible(monkeypatch):
    import cellscale.segment.predictor as model

    monkeypatch.setattr(model, "gpu_present", lambda: True)
    assert Predictor(MODELS / "nuclear", precision="auto", augment="none").precision == "float32"
    monkeypatch.undo()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert model.gpu_present() is False


def test_a_segmenting_process_prints_no_xnnpack_notice():
    """LiteRT prints 'INFO: Created TensorFlow Lite XNNPACK delegate for CPU.' once a process (every job that
    segments): a fresh process, since the notice comes at the process's first allocation."""
    code = ("import sys, numpy as np; from cellscale.segment.predictor import Predictor; "
            f"p = Predictor({str(MODELS / 'nuclear')!r}, precision='int8', augment='none'); "
            "print(p.predict(np.zeros((1, 1, 256, 256), np.float32)).shape); print('after', file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "(1, 4, 256, 256)"
    assert "XNNPACK" not in result.stderr and "after" in result.stderr


def test_only_the_xnnpack_notice_is_dropped(monkeypatch, capfd):
    """What else the runtime writes during the first allocation (an error's message) is written back."""
    import cellscale.segment.predictor as predictor

    monkeypatch.setattr(predictor, "_first_allocation", True)
    with predictor._without_xnnpack_notice():
        os.write(2, predictor._XNNPACK_NOTICE + b"\nERROR: a runtime's message\n")
    with predictor._without_xnnpack_notice():  # after the first allocation: nothing is filtered
        os.write(2, predictor._XNNPACK_NOTICE + b"\n")
    assert capfd.readouterr().err == "ERROR: a runtime's message\n" + predictor._XNNPACK_NOTICE.decode() + "\n"
