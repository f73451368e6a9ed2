"""Whole config sections flow from the rules through the scripts into the steps as typed settings, and every
tracking field reaches the tracker; no step repeats a schema default."""

from __future__ import annotations

import inspect
import runpy
from types import SimpleNamespace

import numpy as np
import pytest
from support import MODELS, ROOT
from support.configs import SCHEMA, SETTINGS, TRACK_FIELDS, minimal_config

from cellscale import settings
from cellscale.track.config import TrackConfig


# the scripts pass whole sections to the steps; every tracking field reaches the tracker
# ---------------------------------------------------------------------------------------------------------------
class _Names(SimpleNamespace):
    """Stand-in for Snakemake's named lists (``s.input.tiles``, ``s.input["nuclear"]``, ``s.log[0]``)."""

    def __getitem__(self, key):
        return getattr(self, key) if isinstance(key, str) else list(vars(self).values())[key]

    def __iter__(self):
        return iter(vars(self).values())


def _run_script(name, rule=None, **parts):
    """Run scripts/NAME.py as Snakemake would for ``rule`` (default: the rule named like the script)."""
    from snakemake.iocontainers import Log

    parts.setdefault("rule", rule or name)
    parts.setdefault("wildcards", _Names(sample="s", compartment="nuclear"))
    parts.setdefault("threads", 1)
    if "log" in parts:   # named after its rule, as in rules/*.smk (the scripts tell the rule by its log's name)
        parts["log"] = Log(fromdict={parts["rule"]: parts["log"][0]})
    runpy.run_path(str(ROOT / "scripts" / f"{name}.py"), init_globals={"snakemake": SimpleNamespace(**parts)})


def _spy(monkeypatch, module, name):
    calls = []
    monkeypatch.setattr(module, name, lambda *args, **kwargs: calls.append((args, kwargs)))
    return calls


def _non_default_track_config() -> dict:
    """A value other than the default for every tracking field, all valid."""
    values = {"solver": "ilp", "max_distance": 21.0, "max_gap": 1, "divisions": False, "birth_cost": 1.7,
              "border_factor": 0.25, "iou_weight": 0.4, "size_weight": 0.3, "intensity_weight": 0.2,
              "gap_cost": 0.15, "division_cost": 0.35, "division_distance": 30.0, "min_division_area": 0.05,
              "touch_cost": 1.5, "min_cycle_frames": 3, "window": 5, "ilp_backend": "cbc", "time_limit": 30.0,
              "costs": "learned", "auto_crowding": 0.9, "scorer": str(ROOT / "models" / "track-scorer")}
    assert set(values) == set(TRACK_FIELDS)
    return values


def test_every_track_field_of_the_config_reaches_the_tracker(tmp_path, monkeypatch):
    """config["track"] -> rule params -> scripts/track.py -> steps.track.track_sample -> link: every field."""
    from snakemake.utils import validate

    from cellscale.io import write_image, write_labels
    from cellscale.synth.timelapse import make_timelapse
    from cellscale.track import linking

    tl = make_timelapse(n_frames=6, shape=(96, 96), n_cells=4, seed=1)
    write_labels(tmp_path / "labels.ome.tif", tl.labels)
    write_image(tmp_path / "movie.ome.tif", (tl.image * 60000).astype(np.uint16), ["nuclei"], axes="TYX")
    wanted = _non_default_track_config()
    config = minimal_config(track=dict(wanted))
    validate(config, schema=str(SCHEMA))
    seen = []
    real_link = linking.link

    def link(*args, **kwargs):
        seen.append(kwargs["config"])
        tracks = real_link(*args, **kwargs)
        seen.append(tracks.attrs)
        return tracks

    monkeypatch.setattr(linking, "link", link)
    import cellscale.steps.track as step  # bound at its import: patched there too, whenever that was

    monkeypatch.setattr(step, "link", link)
    _run_script("track", log=[str(tmp_path / "track.log")],
                input=_Names(labels=str(tmp_path / "labels.ome.tif"), image=str(tmp_path / "movie.ome.tif")),
                output=_Names(ctc=str(tmp_path / "ctc"), table=str(tmp_path / "tracks.parquet")),
                params=_Names(image=str(tmp_path / "movie.ome.tif"), nuclear_channel=None, track=config["track"]))
    received, attrs = seen
    assert received == TrackConfig(**wanted)  # the whole section, as the tracker's typed config
    assert all(getattr(received, name) == value for name, value in wanted.items())
    for name, value in wanted.items():  # and link used each of them
        assert attrs[name] == value, name
    assert (tmp_path / "tracks.parquet").exists()


def test_track_sample_passes_its_config_to_link(tmp_path):
    """Changing a tracking cost changes what link used (here birth_cost, which no command-line flag sets)."""
    from cellscale.io import write_image, write_labels
    from cellscale.steps.track import track_sample
    from cellscale.synth.timelapse import make_timelapse

    tl = make_timelapse(n_frames=6, shape=(96, 96), n_cells=4, seed=2)
    write_labels(tmp_path / "labels.ome.tif", tl.labels)
    write_image(tmp_path / "movie.ome.tif", (tl.image * 60000).astype(np.uint16), ["nuclei"], axes="TYX")
    attrs = {}
    for birth_cost in (None, 2.5):
        config = None if birth_cost is None else TrackConfig.from_dict({"birth_cost": birth_cost})
        tracks = track_sample("s", tmp_path / "labels.ome.tif", tmp_path / "movie.ome.tif", tmp_path / f"ctc{birth_cost}",
                              tmp_path / f"t{birth_cost}.parquet", config=config)
        attrs[birth_cost] = tracks.attrs
    assert attrs[None]["birth_cost"] == settings.default("track", "birth_cost")
    assert attrs[2.5]["birth_cost"] == 2.5
    assert {k: v for k, v in attrs[None].items() if k in TRACK_FIELDS and k != "max_distance"} == \
        {k: v for k, v in TrackConfig().as_dict().items() if k != "max_distance"}


@pytest.mark.parametrize("rule,script,section,step_module,step", [
    ("object_size", "segment", "segment", "cellscale.steps.segment", "estimate_sample_scale"),
    ("object_size", "segment", "tiling", "cellscale.steps.segment", "estimate_sample_scale"),
    ("tile", "segment", "tiling", "cellscale.steps.segment", "tile_sample"),
    ("segment", "segment", "segment", "cellscale.steps.segment", "segment_shard"),
    ("stitch", "segment", "postprocess", "cellscale.steps.segment", "stitch_sample"),
    ("measure", "measure", "measure", "cellscale.steps.measure", "measure_sample"),
])
def test_scripts_pass_whole_sections_as_settings(tmp_path, monkeypatch, rule, script, section, step_module, step):
    import importlib

    from snakemake.utils import validate

    changed = {"tiling": {"tile": 128, "overlap": 16, "shard_mpx": 0.5},
               "segment": {"batch_mpx": 0.25, "precision": "float32", "augment": "flips"},
               "postprocess": {"block": 256, "margin": 32, "overrides": {"nuclear": {"sigma": 1.5}}},
               "measure": {"extra_stats": True}}[section]
    config = minimal_config(**{section: dict(changed)})
    validate(config, schema=str(SCHEMA))
    calls = _spy(monkeypatch, importlib.import_module(step_module), step)
    spec = str(MODELS / "nuclear" / "model.json")
    made = tmp_path / "nuclear.json"  # the measure job's model provenance file (rule model_provenance)
    made.write_text('{"model": "nuclear@0", "dataset": null}')
    parts = {
        "object_size": dict(input=_Names(image="img.tif", spec=spec), output=_Names(estimate="size.json"),
                            params=_Names(sample="s", image="img.tif", roles={"nuclear": 0, "membrane": None},
                                          model="models/nuclear", timelapse=False, gamma=1.0, tiling=config["tiling"],
                                          segment=config["segment"], postprocess=config["postprocess"])),
        "tile": dict(input=_Names(image="img.tif", spec=spec), output=_Names(tiles="tiles"),
                     params=_Names(sample="s", image="img.tif", roles={"nuclear": 0, "membrane": None},
                                   model="models/nuclear", timelapse=False, tiling=config["tiling"], pixel_size=None,
                                   frame_interval=None, gamma=1.0, scale=None)),
        "segment": dict(input=_Names(tiles="shard_0000.zarr.zip", spec=spec), output=_Names(maps="maps.zarr.zip"),
                        params=_Names(model="models/nuclear", segment=config["segment"])),
        "stitch": dict(input=_Names(tiles="tiles", maps=["shard_0000.zarr.zip"], spec=spec), output=_Names(labels="l.ome.tif"),
                       params=_Names(model="models/nuclear", postprocess=config["postprocess"], pixel_size=None,
                                     frame_interval=None)),
        "measure": dict(input=_Names(image="img.tif", nuclear="n.ome.tif", tracks=[], provenance=str(made)),
                        output=_Names(csv="c.csv", parquet="c.parquet", h5ad="c.h5ad"),
                        params=_Names(image="img.tif", compartments=["nuclear"], timelapse=False, channel_names=None,
                                      measure=config["measure"],
                                      provenance={"model": "nuclear", "compartments": ["nuclear"]})),
    }[rule]
    _run_script(script, rule, log=[str(tmp_path / f"{rule}.log")], **parts)
    (args, kwargs), = calls
    received = [v for v in (*args, *kwargs.values()) if isinstance(v, SETTINGS[section])]
    assert received == [SETTINGS[section](**changed)]
    bad = {**config[section], "nonsense": 1}
    parts["params"] = _Names(**{**vars(parts["params"]), section: bad})
    with pytest.raises(ValueError, match="nonsense"):
        _run_script(script, rule, log=[str(tmp_path / f"{rule}.log")], **parts)


@pytest.mark.parametrize("module,source", [
    ("segment", "steps/segment.py"), ("track", "steps/track.py"), ("measure", "steps/measure.py"),
    ("report", "steps/report.py")])
def test_steps_repeat_no_schema_default(module, source):
    """A step takes a settings object (None: the schema's defaults), never a literal copy of a default."""
    import importlib

    step = importlib.import_module(f"cellscale.steps.{module}")
    functions = [f for name, f in vars(step).items() if inspect.isfunction(f) and f.__module__ == step.__name__]
    defaults = {section: settings.section_defaults(section) for section in SETTINGS}
    for function in functions:
        for name, parameter in inspect.signature(function).parameters.items():
            for section, values in defaults.items():
                assert not (name in values and parameter.default is not inspect.Parameter.empty), \
                    f"{function.__name__}({name}=...) repeats {section}.{name}"


# ---------------------------------------------------------------------------------------------------------------
# the library's array functions and the command line: the schema's defaults
# ---------------------------------------------------------------------------------------------------------------
