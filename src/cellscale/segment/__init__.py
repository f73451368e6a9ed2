"""Segmentation: windows, the network, post-processing and stitching.

- :mod:`.tiles`: tile plans, shards and normalised windows;
- :mod:`.preprocess`: channel selection and normalisation;
- :mod:`.model`: what a model is (``model.json``) and its U-Net;
- :mod:`.predictor`: running a model (float32, bfloat16, int8; test-time augmentation);
- :mod:`.postprocess`: maps to labels (marker-controlled watershed);
- :mod:`.stitch`: blending windows and post-processing block by block into one label image;
- :mod:`.image`: all of it in one process;
- :mod:`.metrics`, :mod:`.baseline`: scoring and the Otsu + watershed baseline.
"""
