"""Seeded synthetic microscopy with known ground truth.

* :mod:`~cellscale.synth.tissue`: multichannel tissue (``make_tissue``).
* :mod:`~cellscale.synth.timelapse`: sparse moving, dividing nuclei (``make_timelapse``) and the CTC
  ground-truth writer (``write_ctc_ground_truth``).
* :mod:`~cellscale.synth.colony`: dense colonies of growing, dividing rod-shaped or round cells that push
  each other (``make_colony``), returned as the same ``Timelapse`` container.
* :mod:`~cellscale.synth.files`: writes any of them to disk (``cellscale synth``).
"""
