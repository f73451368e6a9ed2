"""Training: data, augmentation, fitting, quantisation, evaluation and the model card.

- :mod:`.data`: DSB2018, generated tissue and the CODEX tile as examples, split reproducibly;
- :mod:`.targets`: the training targets (inner distance, three classes);
- :mod:`.augment`: training batches of augmented crops;
- :mod:`.fit`: the loss and resumable fitting;
- :mod:`.quantize`: the int8 copy;
- :mod:`.evaluate`: tuning post-processing, held-out scores and the model card;
- :mod:`.run`: ``cellscale train`` from start to end.
"""
