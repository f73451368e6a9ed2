"""Every setting has one source, the config schema's default: the workflow, the scripts, the steps, the library's
settings objects and the command line all read it, and an unknown key is an error that names it."""

from __future__ import annotations

import dataclasses
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support import DEMO, MODELS, ROOT

from support.configs import SCHEMA, SETTINGS, TRACK_FIELDS, minimal_config

from cellscale import settings
from cellscale.track.config import TrackConfig

@pytest.mark.parametrize("name", ["config", "samples"])
def test_the_workflow_schemas_are_the_packaged_ones(name):
    link = ROOT / "workflow" / "schemas" / f"{name}.schema.yaml"
    assert link.is_symlink() and not Path(link.readlink()).is_absolute()  # relative: a checkout anywhere works
    packaged = ROOT / "src" / "cellscale" / "schemas" / f"{name}.schema.yaml"
    assert link.resolve() == packaged.resolve()
    assert settings.schema(name) == yaml.safe_load(link.read_text())


@pytest.mark.parametrize("kind", ["prices", "throughput"])
def test_the_configs_price_tables_and_profiles_are_the_packaged_ones(kind):
    link = ROOT / "config" / kind
    assert link.is_symlink() and not Path(link.readlink()).is_absolute()
    assert link.resolve() == (ROOT / "src" / "cellscale" / "cost" / "tables" / kind).resolve()
    assert any(link.glob("*.yaml"))


def _objects(node, where="config"):
    """Every (path, subschema) of the schema that describes an object."""
    if isinstance(node, dict):
        if node.get("type") == "object" or "properties" in node or "patternProperties" in node:
            yield where, node
        for key, value in node.items():
            yield from _objects(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _objects(value, f"{where}/{i}")


def test_every_object_of_the_schema_is_closed():
    objects = list(_objects(settings.schema()))
    assert len(objects) >= 10
    open_ = [where for where, node in objects if node.get("additionalProperties") is not False]
    assert not open_, f"objects that accept unknown keys: {open_}"


def test_the_shipped_config_is_valid_and_spells_only_known_keys():
    from snakemake.utils import validate

    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    validate(config, schema=str(SCHEMA))
    for section, cls in SETTINGS.items():
        assert cls.from_dict(config[section]) == cls.from_dict(yaml.safe_load(
            (ROOT / "config" / "config.yaml").read_text())[section])  # filled-in defaults change nothing


@pytest.mark.parametrize("mistake, said", [
    ({"segment": {"augmnt": "none"}}, "segment.augmnt: unknown key; segment allows batch_mpx, precision, augment"),
    ({"segmnt": {}}, "segmnt: unknown key; the top level allows samples, models, "),
    ({"tiling": {"tile": "x"}}, "tiling.tile: 'x' is not of type 'integer'"),
    ({"postprocess": {"overrides": {"nucleus": {}}}},
     "postprocess.overrides.nucleus: unknown key; postprocess.overrides allows keys matching ^(nuclear|whole_cell)$"),
])
def test_a_config_error_is_one_line_naming_the_key(mistake, said):
    """What the workflow says of a bad config (rules/common.smk): the key's path and what is wrong, with the keys
    its section allows for an unknown one; not jsonschema's dump of the schema."""
    import jsonschema
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    with pytest.raises(WorkflowError) as raised:
        validate({**yaml.safe_load((ROOT / "config" / "config.yaml").read_text()), **mistake}, schema=str(SCHEMA))
    error = raised.value.__context__
    assert isinstance(error, jsonschema.ValidationError)
    line = settings.config_error(error)
    assert line.startswith(said) and "\n" not in line and len(line) < 400, line


# ---------------------------------------------------------------------------------------------------------------
# one source: settings objects == schema
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("section", list(SETTINGS))
def test_settings_objects_have_the_schema_keys_and_defaults(section):
    cls = SETTINGS[section]
    assert [f.name for f in dataclasses.fields(cls)] == settings.section_keys(section)
    assert cls().as_dict() == settings.section_defaults(section)
    for key, value in settings.section_defaults(section).items():  # same type too (1.0 stays a float)
        assert type(getattr(cls(), key)) is type(value), (section, key)
    assert cls.from_dict(None) == cls.from_dict({}) == cls()


def test_every_track_config_field_is_in_the_schema_and_back():
    assert [f.name for f in dataclasses.fields(TrackConfig)] == TRACK_FIELDS
    assert settings.section_keys("track") == TRACK_FIELDS
    properties = settings.schema()["properties"]["track"]["properties"]
    for name in TRACK_FIELDS:
        assert properties[name]["description"], name
        assert properties[name]["default"] == getattr(TrackConfig(), name), name
    from cellscale.track.config import ILP_BACKENDS, SOLVERS

    assert list(SOLVERS) == properties["solver"]["enum"] and list(ILP_BACKENDS) == properties["ilp_backend"]["enum"]


def test_track_config_keeps_its_validation():
    with pytest.raises(ValueError, match="birth_cost"):
        TrackConfig.from_dict({"birth_cost": 0})
    with pytest.raises(ValueError, match="min_cycle_frames"):
        TrackConfig(min_cycle_frames=4)
    with pytest.raises(ValueError, match="min_cycle_frames 3 needs solver ilp"):   # lap keeps at most 2
        TrackConfig(solver="lap", min_cycle_frames=3)
    assert TrackConfig(solver="ilp", min_cycle_frames=3).min_cycle_frames == 3
    assert TrackConfig.from_dict({"birth_cost": 2}).birth_cost == 2


# ---------------------------------------------------------------------------------------------------------------
# an unknown key is an error naming it: in the library and in the workflow
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("section,key", [("tiling", "tiles"), ("segment", "batch_size"), ("postprocess", "blocks"),
                                         ("measure", "extra_stat"), ("track", "birth_costs")])
def test_an_unknown_key_is_an_error_naming_it(section, key):
    with pytest.raises(ValueError, match=rf"{key}.*{section}"):
        SETTINGS[section].from_dict({key: 3})
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    with pytest.raises(WorkflowError, match=key):
        validate(minimal_config(**{section: {key: 3}}), schema=str(SCHEMA))


@pytest.mark.parametrize("bad,key", [
    ({"trak": {"max_gap": 1}}, "trak"),  # top level
    ({"models": {"nuclear": "a", "tissue": "b", "other": "c"}}, "other"),
    ({"models": {"nuclear": {"path": "m.keras", "inputs": ["nuclear"], "compartments": ["nuclear"], "input": []},
                 "tissue": "b"}}, "input"),  # a declared model of one's own
    ({"postprocess": {"overrides": {"nuclear": {"sigmaa": 1.0}}}}, "sigmaa"),
])
def test_unknown_keys_anywhere_are_errors(bad, key):
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    with pytest.raises(WorkflowError, match=f"'{key}' was unexpected") as raised:
        validate(minimal_config(**bad), schema=str(SCHEMA))
    assert re.match(rf"(\S+\.)?{key}: unknown key; ", settings.config_error(raised.value.__context__))  # the workflow's


def test_snakemake_fills_every_default_and_accepts_every_documented_key():
    from snakemake.utils import validate

    config = minimal_config(track={"birth_cost": 2})
    validate(config, schema=str(SCHEMA))
    for section, cls in SETTINGS.items():
        assert config[section] == {**settings.section_defaults(section), **({"birth_cost": 2}
                                                                           if section == "track" else {})}
    assert TrackConfig.from_dict(config["track"]) == TrackConfig(birth_cost=2)


def test_the_sheet_and_models_have_defaults_as_documented():
    """An empty config takes the sheet and the shipped models; a model left out of `models` takes its default."""
    from snakemake.utils import validate

    config = {}
    validate(config, schema=str(SCHEMA))
    assert config["samples"] == "config/samples.tsv"
    assert config["models"] == {"nuclear": "models/nuclear", "tissue": "models/tissue"}
    config = {"models": {"tissue": "models/tissue-tight"}}
    validate(config, schema=str(SCHEMA))
    assert config["models"] == {"nuclear": "models/nuclear", "tissue": "models/tissue-tight"}


def test_the_workflow_names_an_unknown_config_key(tmp_path):
    """`snakemake --dry-run` with a misspelt key: the run stops before any job and names the key."""
    image = sorted((DEMO / "dsb2018" / "images").glob("*.png"))[0]
    (tmp_path / "samples.tsv").write_text("sample\timage\tkind\tnuclear_channel\tmembrane_channel\tchannel_names\n"
                                          f"s\t{image}\ttissue\t\t\t\n")
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config.update(samples=str(tmp_path / "samples.tsv"),
                  models={"nuclear": str(MODELS / "nuclear"), "tissue": str(MODELS / "tissue")})
    config["track"]["birth_costs"] = 2
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(config))
    snakemake = str(Path(sys.executable).parent / "snakemake")
    cmd = [snakemake, "-s", str(ROOT / "workflow" / "Snakefile"), "--directory", str(tmp_path), "--dry-run",
           "--configfile", str(tmp_path / "bad.yaml")]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert f"{tmp_path / 'bad.yaml'}: track.birth_costs: unknown key; track allows " in result.stdout + result.stderr
    del config["track"]["birth_costs"]
    config["track"]["birth_cost"] = 2  # documented: valid
    (tmp_path / "good.yaml").write_text(yaml.safe_dump(config))
    result = subprocess.run(cmd[:-1] + [str(tmp_path / "good.yaml")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


# ---------------------------------------------------------------------------------------------------------------
def _defaults(function) -> dict:
    return {k: p.default for k, p in inspect.signature(function).parameters.items()
            if p.default is not inspect.Parameter.empty}


def test_library_functions_default_to_the_schema():
    from cellscale.segment.image import segment_image
    from cellscale.segment.stitch import labels_by_block, labels_from_arrays
    from cellscale.segment.tiles import plan_tiles
    from cellscale.track.linking import link

    tiling, post = settings.section_defaults("tiling"), settings.section_defaults("postprocess")
    got = _defaults(segment_image)
    assert {k: got[k] for k in ("tile", "overlap", "shard_mpx")} == tiling
    assert (got["block"], got["margin"]) == (post["block"], post["margin"])
    for function in (labels_by_block, labels_from_arrays):
        assert (_defaults(function)["block"], _defaults(function)["margin"]) == (post["block"], post["margin"])
    assert not {"tile", "overlap", "shard_mpx"} & set(_defaults(plan_tiles))  # required: the caller's settings
    got = _defaults(link)
    assert {k: got[k] for k in ("max_distance", "max_gap", "divisions", "solver")} == \
        {k: settings.default("track", k) for k in ("max_distance", "max_gap", "divisions", "solver")}


def test_the_command_line_is_read_without_pandas_or_scipy():
    """Every command builds the whole parser (the planner's defaults among it) before it runs: pandas and scipy
    (0.6 s of imports here) load only where a command needs them, so `cellscale --help` takes a fifth of a second."""
    code = ("import sys; from cellscale.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('pandas', 'scipy') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr[-2000:]


def test_the_workflows_start_imports_neither_pandas_nor_scipy():
    """Every Snakemake start (the launcher's, each cluster job's, each dry run's) runs rules/common.smk's imports:
    the library modules it names at its top level load without pandas or scipy (scipy.spatial alone was a quarter
    of a second of each start, from the tracking scorer's module)."""
    lines = [line.split("#")[0].strip() for line in (ROOT / "rules" / "common.smk").read_text().splitlines()
             if line.startswith(("from cellscale", "import cellscale"))]
    assert len(lines) >= 5, lines   # the start-up checks' imports
    code = "; ".join([*lines, "import sys", "print(sorted(m for m in ('pandas', 'scipy') if m in sys.modules))"])
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr[-2000:]


def test_the_command_line_defaults_are_the_schema_defaults():
    code = ("import sys, cellscale.cli; assert 'numpy' not in sys.modules, 'cellscale.cli imports numpy'; "
            "print('ok')")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "ok"
    from cellscale.cli import build_parser

    parser = build_parser()
    seg = parser.parse_args(["segment", "in.tif", "-o", "out.tif"])
    assert (seg.tile, seg.overlap) == (settings.default("tiling", "tile"), settings.default("tiling", "overlap"))
    assert (seg.precision, seg.augment) == (settings.default("segment", "precision"),
                                            settings.default("segment", "augment"))
    track = parser.parse_args(["track", "labels", "-o", "out"])
    for key in ("max_distance", "max_gap", "divisions", "solver"):
        assert getattr(track, key) == settings.default("track", key), key
    assert parser.parse_args(["track", "labels", "-o", "out", "--no-divisions"]).divisions is False
    measure = parser.parse_args(["measure", "l.tif", "i.tif", "-o", "c.csv"])
    assert measure.extra_stats == settings.default("measure", "extra_stats")


# ---------------------------------------------------------------------------------------------------------------
# documentation: the README's table agrees with the schema; no benchmark figures where they go stale
# ---------------------------------------------------------------------------------------------------------------
def test_the_readme_config_table_agrees_with_the_schema():
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Configuration")[1].split("\n\n")[2]
    rows = [line.split(" | ") for line in table.splitlines()[2:]]
    documented = set()
    for key_cell, default_cell, _ in ((r[0].lstrip("| "), r[1], r[2]) for r in rows):
        keys = re.findall(r"`([\w.]+)`", key_cell)
        section = keys[0].split(".")[0]
        names = [keys[0]] + [f"{section}.{k}" for k in keys[1:]]
        values = default_cell.split(" / ") if " / " in default_cell else [default_cell] * len(names)
        for name, value in zip(names, values):
            documented.add(name)
            if "." not in name or section == "models":   # top-level keys and the models: their own defaults
                node = {"properties": settings.schema()["properties"]}
                for part in name.split("."):
                    node = node["properties"][part]
                assert value.strip("`") == node["default"], name
                continue
            section, key = name.split(".")
            assert key in settings.section_keys(section), name
            if value != "see the schema":
                assert yaml.safe_load(value.strip("`")) == settings.default(section, key), name
    sections = [name for name, node in settings.schema()["properties"].items() if "properties" in node]
    for section in sections:  # every section (batches, output, cost too), not only the typed settings' ones
        for key in settings.section_keys(section):
            assert f"{section}.{key}" in documented, f"{section}.{key} is not in README's configuration table"


FIGURES = re.compile(r"\bF1\b|\bAP\b|Mpx/s|\d\s*GB\b|\d+x faster|TRA \d")


def test_no_benchmark_figures_in_config_comments_or_schema_descriptions():
    comments = [line.split("#", 1)[1] for line in (ROOT / "config" / "config.yaml").read_text().splitlines()
                if "#" in line]
    descriptions = re.findall(r"description: (.*)", (ROOT / "src/cellscale/schemas/config.schema.yaml").read_text())
    stale = [text for text in comments + descriptions if FIGURES.search(text)]
    assert not stale, stale
