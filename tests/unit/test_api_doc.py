"""docs/api.md runs: its ```python blocks are executed in order, in one namespace, in an empty folder."""

from __future__ import annotations

import re

import pandas as pd

from support import ROOT

DOC = ROOT / "docs" / "api.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.M | re.S)


def test_python_blocks_of_docs_api_run(tmp_path, monkeypatch):
    blocks = python_blocks(DOC.read_text(encoding="utf-8"))
    assert len(blocks) >= 6, "docs/api.md lost its code blocks"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "docs_api"}
    for number, block in enumerate(blocks, start=1):
        exec(compile(block, f"docs/api.md block {number}", "exec"), namespace)
    # what the guide says it makes, made
    assert namespace["labels"].ndim == 2 and namespace["labels"].max() > 10
    assert sorted(namespace["cells"]) == ["nuclear", "whole_cell"]
    assert namespace["movie_labels"].shape == namespace["movie"].shape
    assert set(namespace["table"]["compartment"]) == {"nuclear", "whole_cell", "cytoplasm"}
    assert len(namespace["lineage"]) >= 1
    for name in ("nuclei.ome.tif", "movie_nuclei.ome.tif", "cells.csv", "cells.parquet", "tracks/res_track.txt",
                 "tracks.parquet"):
        assert (tmp_path / name).is_file(), name
    assert len(pd.read_parquet(tmp_path / "cells.parquet")) == len(namespace["table"])


def test_readme_links_docs_api():
    assert "docs/api.md" in (ROOT / "README.md").read_text(encoding="utf-8")
