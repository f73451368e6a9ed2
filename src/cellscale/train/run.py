"""``cellscale train`` from start to end: load the data, fit (resumably), export, then tune, score and write the
model card (:mod:`.finish`)."""

from __future__ import annotations

from pathlib import Path

from cellscale.registry import model_entry, model_path
from cellscale.segment.model import ModelSpec
from cellscale.segment.size import training_sizes
from cellscale.train.data import Example, codex_training_examples
from cellscale.train.finish import finish_model, finish_tissue_model
from cellscale.train.fit import export, fit
from cellscale.train.options import TrainOptions, log
from cellscale.train.versions import codex_dir, training_set


def parent_model(init_from: str | None) -> tuple[Path | None, dict | None]:
    """``--init-from`` as a path (a model folder, a ``.keras`` file, or a registry name ``NAME[@VERSION]``) and
    what the card records of it (``fine_tuned_from``: the model's ``NAME@VERSION``, folder and card hash)."""
    if not init_from:
        return None, None
    path = model_path(init_from, f"--init-from {init_from}")  # a registry name: an error lists the models there are
    if path.is_dir():
        entry = model_entry(path)
        return path, {"model": entry.ref, "path": str(init_from), "card_sha256": entry.card_sha256,
                      "dataset": entry.dataset}
    from cellscale.datasets import sha256_of

    return path, {"model": path.name, "path": str(init_from), "sha256": sha256_of(path), "card_sha256": None}


def small_examples_note(train: list[Example], tile: int, multiple: int) -> str | None:
    """A warning when training images are smaller than the crop (``--tile``): each of their crops is the whole
    image zero-padded to the crop's size, mostly padding at a 128-px review tile and a 256-px crop. ``None`` when
    every image fits."""
    small = [side for side in (min(ex.image.shape[-2:]) for ex in train) if side < tile]
    if not small:
        return None
    fits = max(multiple, min(small) // multiple * multiple)
    return (f"warning: {len(small)} of {len(train)} training images are smaller than the {tile}-px crop (the "
            f"smallest {min(small)} px): their crops are mostly zero padding; --tile {fits} fits them")


def object_sizes(train, compartments: list[str], source: str) -> dict:
    """Per compartment, the typical object sizes of the training images that label it (what ``scale: auto``
    compares an image's with; :func:`cellscale.segment.size.training_sizes`); a compartment no image labels is
    left out. A cut-out example (a corrected tile) counts like any other image."""
    sizes = {}
    for comp in compartments:
        try:
            sizes[comp] = training_sizes([ex.labels[comp] for ex in train if ex.labels.get(comp) is not None], source)
        except ValueError:  # no image labels any object of it
            pass
    return sizes or None


def _network(spec: ModelSpec) -> str:
    """What fine-tuning must match: inputs, outputs and size of the network."""
    return (f"{' + '.join(spec.inputs)} -> {' + '.join(spec.compartments)}, base filters {spec.base_filters}, "
            f"depth {spec.depth}")


def run_training(options: TrainOptions) -> int:
    """Train the model ``options`` describe into ``options.out`` (checkpoints in ``options.run_dir``)."""
    data = training_set(options)
    missing = [] if options.fit_only else data.missing_splits()
    if missing:   # before fitting: tuning and the model card need them, and would fail only after the steps
        m = data.manifest
        raise ValueError(f"dataset {data.dataset}: no {' or '.join(missing)} examples, which tuning the "
                         f"post-processing and the model card's scores need. Your own images and masks: record them "
                         f"again, `cellscale data add {m.name} {m.root_path} --layout pairs --parent {m.ref} "
                         f"--inherit` (3 or more pairs: an empty val or test split gets one of them; or give each "
                         f"sample's split in a table, --splits FILE with columns sample and split), and train on the "
                         f"version it names. Corrections: import them on top of a dataset that has them (`cellscale "
                         f"review import BUNDLE --dataset NAME --parent NAME@ID`, e.g. the generalist's generated "
                         f"tissue). Or train with --fit-only (no tuning, no card)")
    if not options.fit_only:
        data.check_held_out()
    codex, codex_ref = codex_dir(options)
    init, parent = parent_model(options.init_from)
    if data.tissue:
        spec = ModelSpec(name=Path(options.out).name, inputs=["nuclear", "membrane"],
                         compartments=["nuclear", "whole_cell"], base_filters=options.base_filters,
                         depth=options.depth, tile_multiple=2**options.depth)
        train = data.examples("train")
        if codex:
            train += codex_training_examples(codex, options.labellings, len(train), options.codex_share)
    else:
        spec = ModelSpec(name=Path(options.out).name, inputs=["nuclear"], compartments=["nuclear"],
                         base_filters=options.base_filters, depth=options.depth, tile_multiple=2**options.depth)
        train = data.examples("train")
    theirs = _network(ModelSpec.read(init)) if init is not None and init.is_dir() else None
    if theirs is not None and theirs != _network(spec):  # before any step: keras's own error names weight counts
        raise ValueError(f"--init-from {options.init_from}: its network ({theirs}) is not the one this training "
                         f"builds ({_network(spec)}: from the data {options.data} and --base-filters/--depth); "
                         f"fine-tune a model of the same kind (a tissue model for nuclear + membrane data) with its "
                         f"--base-filters and --depth")
    log(f"{len(train)} training images from {options.data}")
    spec.object_sizes = object_sizes(train, spec.compartments, f"{data.describe()}, training split")
    small = small_examples_note(train, options.tile, spec.tile_multiple)
    if small:
        log(small)
    ckpt = fit(spec, train, options.run_dir, steps=options.steps, batch=options.batch, tile=options.tile,
               lr=options.lr, seed=options.seed, log=log, init_from=init, workers=options.workers)
    # a parent overwritten by its fine-tuned copy (--out the same folder) cannot be scored next to it
    same = init is not None and init.is_dir() and init.resolve() == Path(options.out).resolve()
    export(ckpt, spec, options.out)
    log(f"exported to {options.out}")
    if options.fit_only:
        log("--fit-only: rerun without it (same --run-dir) to tune, score and write the model card")
        return 0
    lineage = {"parent": parent, "parent_dir": None if same else init, "codex": codex, "codex_dataset": codex_ref}
    if data.tissue:
        finish_tissue_model(options, spec, log=log, data=data, lineage=lineage)
    else:
        finish_model(options, spec, log=log, data=data, lineage=lineage)
    return 0
