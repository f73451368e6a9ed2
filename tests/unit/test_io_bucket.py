"""cellscale.io.bucket: a job's own reads of its fields from Cloud Storage, against the Cloud Storage stand-in
(tests/support/gcs_emulator.py): one request a field, missing ones left out."""

from __future__ import annotations

import pytest
from support.gcs_emulator import GcsEmulator

from cellscale.io.bucket import fetch, join, split_uri


def test_uris():
    assert split_uri("gs://b/cellscale/data/f.tif") == ("b", "cellscale/data/f.tif")
    assert split_uri("gcs://b/k") == ("b", "k")
    assert join("gs://b/cellscale/", "data/f.tif") == "gs://b/cellscale/data/f.tif"
    for bad in ("s3://b/k", "gs://b/", "data/f.tif"):
        with pytest.raises(ValueError, match="not a Cloud Storage object"):
            split_uri(bad)


def test_fetch_reads_each_field_with_one_request(tmp_path, monkeypatch):
    with GcsEmulator(tmp_path / "emulator") as gcs:
        src = tmp_path / "src" / "data"
        src.mkdir(parents=True)
        for i in range(5):
            (src / f"f{i}.tif").write_bytes(bytes([i]) * (1000 + i))
        gcs.upload_tree(tmp_path / "src", "cellscale")
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs.endpoint("job"))
        uris = [join(f"gs://{gcs.bucket}/cellscale", f"data/f{i}.tif") for i in range(6)]   # f5 is missing
        got = fetch(uris, tmp_path / "fields")
        assert set(got) == set(uris[:5])
        for i, uri in enumerate(uris[:5]):
            assert got[uri].read_bytes() == bytes([i]) * (1000 + i)
        assert not (tmp_path / "fields" / gcs.bucket / "cellscale/data/f5.tif").exists()
        mine = [q for q in gcs.requests if q.client == "job"]
        assert sum(q.op == "objects.get" for q in mine) == 6 and all(q.cls == "B" for q in mine)
        # Beside them, google-cloud-storage (3.17.1 on) reads the bucket's metadata once in a background thread, and
        # once more after a missing object if that first read had finished: at most two looks at the bucket.
        looks = sum(q.op == "buckets.get" for q in mine)
        assert looks <= 2 and len(mine) == 6 + looks
