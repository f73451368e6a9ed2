"""Cell Tracking Challenge files: numbered label TIFFs and the ``L B E P`` track file (cellscale.io.ctc)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tifffile

from cellscale.io.ctc import frame_digits, read_label_dir, read_lineage, write_label_frames, write_lineage


def test_ctc_files(tmp_path):
    assert (frame_digits(999), frame_digits(1000)) == (3, 4)
    frames = np.arange(2 * 3 * 4, dtype=np.uint16).reshape(2, 3, 4)
    paths = write_label_frames(tmp_path, "mask", (f for f in frames), n_frames=1000)
    assert [p.name for p in paths] == ["mask0000.tif", "mask0001.tif"]
    back = read_label_dir(tmp_path)
    assert back.dtype == np.uint16 and np.array_equal(back, frames)
    lin = pd.DataFrame({"L": [1, 2, 3], "B": [0, 4, 4], "E": [3, 9, 9], "P": [0, 1, 1]})
    path = write_lineage(tmp_path / "res_track.txt", lin)
    assert path.read_text() == "1 0 3 0\n2 4 9 1\n3 4 9 1\n"
    pd.testing.assert_frame_equal(read_lineage(path), lin.astype("int64"))
    assert write_lineage(tmp_path / "none.txt", lin[:0]).read_text() == ""
    assert read_lineage(tmp_path / "none.txt").columns.tolist() == ["L", "B", "E", "P"]
    (tmp_path / "bad.txt").write_text("1 0 3 0\n2 4 x 1\n")
    with pytest.raises(ValueError, match=r"bad\.txt:2: expected 'L B E P'"):
        read_lineage(tmp_path / "bad.txt")
    tifffile.imwrite(tmp_path / "mask0002.tif", frames[0].astype(np.float32))
    with pytest.raises(ValueError, match=r"mask0002\.tif must hold integer labels, got dtype float32"):
        read_label_dir(tmp_path)
