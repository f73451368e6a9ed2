"""Every workflow setting has one source: the packaged config schema.

``cellscale/schemas/config.schema.yaml`` (``workflow/schemas/`` links to it) declares each key of
``config/config.yaml``: its type, its description and its default. Snakemake's ``validate`` fills the defaults
into the config (and rejects an unknown key, naming it); the library's typed settings
(:class:`cellscale.segment.settings.TilingSettings`, :class:`~cellscale.segment.settings.SegmentSettings`,
:class:`~cellscale.segment.settings.PostprocessSettings`, :class:`cellscale.steps.measure.MeasureSettings`,
:class:`cellscale.track.config.TrackConfig`) and the command line read their defaults from here, so a default is
written once.

Only the standard library and PyYAML: the command line imports this at startup.
"""

from __future__ import annotations

import argparse
import copy
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import fields
from functools import cache
from importlib import resources
from typing import Any, ClassVar

import yaml

__all__ = ["AUTO", "BATCH_CAP", "batch_runs", "SCALE_BOUNDS", "is_auto", "number_arg", "parse_scale", "planning_scale",
           "Settings", "choices", "config_error", "default", "description", "from_section", "schema",
           "section_defaults", "section_keys"]


@cache
def _load(name: str) -> dict:
    text = resources.files("cellscale").joinpath("schemas", f"{name}.schema.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def schema(name: str = "config") -> dict:
    """The packaged JSON schema ``name`` (``config`` or ``samples``), as a fresh dict."""
    return copy.deepcopy(_load(name))


def _properties(section: str) -> dict:
    props = _load("config")["properties"]
    if section not in props or "properties" not in props[section]:
        raise KeyError(f"the config schema has no section {section!r}")
    return props[section]["properties"]


def section_keys(section: str) -> list[str]:
    """The keys the schema declares in a config section, in schema order."""
    return list(_properties(section))


def default(section: str, key: str) -> Any:
    """The schema's default of ``section.key`` (a fresh copy)."""
    prop = _properties(section).get(key)
    if prop is None or "default" not in prop:
        raise KeyError(f"the config schema has no default for {section}.{key}")
    return copy.deepcopy(prop["default"])


def description(section: str, key: str) -> str:
    """The schema's description of ``section.key``."""
    return _properties(section)[key].get("description", "")


def choices(section: str, key: str) -> list:
    """The values the schema allows for ``section.key`` (its ``enum``; an array's: its items')."""
    prop = _properties(section)[key]
    return list(prop["enum"] if "enum" in prop else prop["items"]["enum"])


def section_defaults(section: str) -> dict:
    """Every key of a config section with its schema default."""
    return {key: copy.deepcopy(prop["default"]) for key, prop in _properties(section).items() if "default" in prop}


def check_section(section: str, values: Mapping | None, noun: str = "key") -> dict:
    """``values`` (None: none) as a dict; a key the schema does not declare is a ValueError naming it."""
    values = dict(values or {})
    known = section_keys(section)
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown {noun}(s) {unknown} in config section {section!r}; known: {sorted(known)}")
    return values


def config_error(error) -> str:
    """A config's schema error (jsonschema's ``ValidationError``, as Snakemake's ``validate`` raises it) as one line:
    the key's path and what is wrong; for an unknown key, the keys its section allows (not the schema)."""
    path = ".".join(map(str, error.absolute_path))
    if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
        declared = list(error.schema.get("properties") or {})
        patterns = list(error.schema.get("patternProperties") or {})
        unknown = [k for k in error.instance if k not in declared and not any(re.search(p, k) for p in patterns)]
        allowed = ", ".join(declared + [f"keys matching {p}" for p in patterns])
        keys = ", ".join(f"{path}.{k}" if path else str(k) for k in unknown)
        return f"{keys}: unknown key{'s' * (len(unknown) > 1)}; {path or 'the top level'} allows {allowed}"
    return f"{path or 'the config'}: {error.message}"


def from_section(cls, section: str, values: Mapping | None, noun: str = "key"):
    """``cls(**values)`` for a settings dataclass of a config section: unknown keys are an error naming them,
    missing ones take their defaults (the dataclass's, which come from the schema)."""
    values = check_section(section, values, noun)
    names = {f.name for f in fields(cls)}
    missing = sorted(set(values) - names)
    if missing:  # the schema declares a key the class lacks: a bug, caught by tests/unit/test_settings.py
        raise TypeError(f"{cls.__name__} lacks the config key(s) {missing} of section {section!r}")
    return cls(**values)


class Settings:
    """Mixin of the settings dataclasses: ``SECTION`` names their config section.

    Give each field its default with :func:`default` (``tile: int = default("tiling", "tile")``), so the
    schema stays the one source.
    """

    SECTION: ClassVar[str]

    @classmethod
    def from_dict(cls, values: Mapping | None = None):
        """Build from a config section (e.g. ``config["tiling"]``); unknown keys are an error naming them."""
        return from_section(cls, cls.SECTION, values)

    def as_dict(self) -> dict:
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self)}


#: A batch of still images holds at most this many times ``tiling.shard_mpx`` (about ``shard_mpx`` on average):
#: :func:`cellscale.samples.pack_batches` cuts by it, and the cost model sizes every batch job's memory for it
#: (:func:`cellscale.cost.model.batch_mpx`). Here, below both: the samples and cost packages may not import each other.
BATCH_CAP = 2


def batch_runs(pixels: Sequence[int], names: Sequence[str], cap: int) -> list[tuple[int, int]]:
    """[start, stop) runs, in order, of the fields of view ``names`` of ``pixels`` pixels each: a run of more than
    ``cap`` pixels is cut after its member whose name hashes lowest (SHA-256), and each part again, until every run
    holds at most ``cap`` (or one field of view). :func:`cellscale.samples.pack_batches` cuts its batches so; here,
    below samples and the cost package, so that a cost model can pack batches as the workflow does."""
    import hashlib

    import numpy as np

    pixels = np.asarray(pixels, dtype=np.int64)
    priority = np.array([int.from_bytes(hashlib.sha256(n.encode()).digest()[:8], "big") for n in names], np.uint64)
    total = np.concatenate([[0], np.cumsum(pixels)])
    runs, todo = [], [(0, len(pixels))]
    while todo:
        lo, hi = todo.pop()
        if hi - lo <= 1 or total[hi] - total[lo] <= cap:
            runs.append((lo, hi))
            continue
        cut = lo + int(np.argmin(priority[lo:hi - 1])) + 1
        todo += [(cut, hi), (lo, cut)]
    return sorted(runs)


# --- the sample sheet's scale column (cellscale/schemas/samples.schema.yaml), read by the workflow, the planner,
# review and the command line alike

#: The ``scale`` value that asks for an estimate from the objects' size (:mod:`cellscale.segment.size`).
AUTO = "auto"
#: Model pixels per image pixel: the bounds of a ``scale``.
SCALE_BOUNDS = (0.05, 20.0)


def is_auto(scale) -> bool:
    """Whether a sample's ``scale`` asks for the estimate (``"auto"``, any case)."""
    return isinstance(scale, str) and scale.strip().lower() == AUTO


def parse_scale(value) -> float | str | None:
    """A ``scale`` as a sample sheet or the command line gives it: empty (None, "", NaN) -> None, ``auto`` ->
    :data:`AUTO`, else a number of model pixels per image pixel within :data:`SCALE_BOUNDS` (a ValueError)."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or type(value).__name__ == "NAType":
        return None  # (pandas' NA too: an empty cell of a sheet read by pandas)
    if is_auto(value):
        return AUTO
    if isinstance(value, str):
        if not value.strip():
            return None
        try:
            value = float(value)
        except ValueError:
            raise ValueError(f"scale must be a number (model pixels per image pixel) or auto, got {value!r}") from None
    lo, hi = SCALE_BOUNDS
    if not (isinstance(value, (int, float)) and math.isfinite(value) and lo <= value <= hi):
        raise ValueError(f"scale must be a number from {lo:g} to {hi:g} (model pixels per image pixel) or auto, "
                         f"got {value}")
    return float(value)


def planning_scale(value) -> float:
    """The scale to size work by before any image is segmented: a number as given, 1 for empty or ``auto`` (its
    estimate is made by the segmentation job)."""
    value = parse_scale(value)
    return 1.0 if value is None or value == AUTO else value


def number_arg(convert, low: float, what: str, above: bool = False, high: float = math.inf):
    """An argparse ``type=`` of the command line's numbers (:mod:`cellscale.cli`, and :mod:`cellscale.deploy.sizing`'s
    ``cellscale size``): a finite number (``convert``: int or float) of at least ``low`` (above it with ``above``)
    and at most ``high``; anything else a usage error saying what the option takes (``what``)."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or value < low or (above and value == low) or value > high:
            raise argparse.ArgumentTypeError(f"expected {what}, not {text!r}")
        return value

    return parse
