"""`make demo-data` regenerates the committed demo samples byte for byte (seeded pixels, content-derived OME UUIDs)."""
from __future__ import annotations

import shlex

import pytest
from support import ROOT

from cellscale.cli import main

DEMO = ROOT / "data" / "demo" / "synthetic"
TRUTH = {"tissue.ome.tif": ["tissue_truth/nuclear.tif", "tissue_truth/whole_cell.tif"]}   # committed beside it


def demo_data_commands() -> list[list[str]]:
    """The Makefile's demo-data recipe: each `cellscale synth ...` command's arguments."""
    recipe = (ROOT / "Makefile").read_text().split("\ndemo-data:")[1].split("\n\n")[0]
    return [shlex.split(line.split("/cellscale ", 1)[1]) for line in recipe.splitlines() if "/cellscale synth" in line]


@pytest.mark.parametrize("args", demo_data_commands(), ids=lambda a: a[1])
def test_make_demo_data_regenerates_the_committed_files_byte_for_byte(tmp_path, args):
    """Each of the Makefile's demo-data commands, into a scratch folder: every committed file comes back identical."""
    out = args.index("-o") + 1
    name = args[out].removeprefix("data/demo/synthetic/")
    assert main([*args[:out], str(tmp_path / name), *args[out + 1:]]) == 0
    for rel in [name, *TRUTH.get(name, [])]:
        assert (tmp_path / rel).read_bytes() == (DEMO / rel).read_bytes(), rel
