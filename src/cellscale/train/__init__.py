"""Training: data, augmentation, fitting, quantisation, evaluation and the model card.

- :mod:`.options`: what a run was asked to do (:class:`~.options.TrainOptions`, :class:`~.options.QuantizeOptions`);
- :mod:`.data`: DSB2018, generated tissue and the CODEX tile as examples, split reproducibly;
- :mod:`.versions`: the data a dataset version names (``--data NAME@ID``), generated sets registered as versions;
- :mod:`.targets`: the training targets (inner distance, three classes);
- :mod:`.augment`: training batches of augmented crops;
- :mod:`.fit`: the loss and resumable fitting;
- :mod:`.quantize`: the int8 copy;
- :mod:`.evaluate`: maps of whole images, tuning post-processing, held-out scores;
- :mod:`.card`: the model card and ``metrics.json`` (nuclear and tissue models);
- :mod:`.finish`: tune, score, quantise and write the card of a fitted model;
- :mod:`.run`: ``cellscale train`` from start to end.

Imports go one way: options and data first, run last; nothing here imports :mod:`.run`.
"""
