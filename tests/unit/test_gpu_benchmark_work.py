"""benchmarks/gpu.py's count of the network's work per Mpx and its timing of a job's CPU part (the GPU profiles'
figures rest on both)."""

from __future__ import annotations

import importlib.util

import pytest
from support import ROOT


def _gpu_benchmark():
    spec = importlib.util.spec_from_file_location("gpu_benchmark", ROOT / "benchmarks" / "gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_network_work_counts_convolutions_and_layer_outputs(tmp_path):
    import keras

    x = keras.Input((None, None, 2))
    a = keras.layers.Conv2D(8, 3, padding="same")(x)
    b = keras.layers.SeparableConv2D(4, 5, padding="same")(a)
    c = keras.layers.MaxPooling2D(2)(b)
    keras.Model(x, c).save(tmp_path / "model.keras")
    gflop, gb, layers = _gpu_benchmark().network_work(tmp_path, window=64)
    px = 64 * 64
    flops = 2 * px * 9 * 2 * 8 + 2 * px * (25 * 8 + 8 * 4)      # dense 3x3, then depthwise 5x5 + pointwise
    written = 4 * (px * 8 + px * 4 + px // 4 * 4)                 # float32 outputs of the three layers
    assert layers == 3
    assert gflop == pytest.approx(flops / (px / 1e6) / 1e9)
    assert gb == pytest.approx(written / (px / 1e6) / 1e9)


def test_cpu_part_replays_the_network_and_times_the_rest():
    """The CPU part of a segment_batch job: the network's maps recorded once and replayed (cpu_part checks that the
    replayed runs give the real run's cells), timed on 1 and 2 threads; the 2-thread run is below the real job's time
    (its network share is positive)."""
    rows = _gpu_benchmark().cpu_part(ROOT / "models" / "nuclear", n=2, edge=192, threads=[1, 2])
    assert [k for k, _, _ in rows] == [1, 2]
    assert all(s > 0 for _, s, _ in rows)
    network = rows[1][2]  # the real 2-thread job less its replayed run: the network's share
    assert network is not None and network > 0
