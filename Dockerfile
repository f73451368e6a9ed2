# The one image every pod of `snakemake --profile profiles/gke` runs: snakemake-executor-plugin-kubernetes has
# one image per run, not per rule, so the GPU rule (segment) and the CPU rules (on spot nodes) share it.
#
#   gcloud builds submit --tag REGION-docker.pkg.dev/PROJECT/cellscale/cellscale:0.1.0 .   (Cloud Build)
#   docker build -t cellscale:0.1.0 .                                                    (a local Docker)
#
# GPU (default): TensorFlow's CUDA image; GKE installs the NVIDIA driver on the GPU nodes and mounts it under
# /usr/local/nvidia. CPU only (a cluster without GPUs, planned with cellscale plan --max-gpus 0: docs/gke.md):
#   docker build --build-arg BASE=python:3.11-slim-bookworm --build-arg TF_PACKAGE=tensorflow-cpu==2.21.0 .
# The build context is the Dockerfile and what it COPYs (.dockerignore, .gcloudignore): no data, no .venv.
# The workflow's inputs (the models its config names, images) are not taken from the image: they reach pods as
# declared inputs from the bucket. The workflow's code reaches them as Snakemake's source archive. The package
# carries the shipped models as package data (cellscale/models/, ~15 MB), for `cellscale segment` in the image.
ARG BASE=tensorflow/tensorflow:2.21.0-gpu
FROM ${BASE}

# empty: TensorFlow comes with the base image
ARG TF_PACKAGE=""
ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    LD_LIBRARY_PATH=/usr/local/nvidia/lib64:/usr/local/nvidia/lib \
    PATH=/usr/local/nvidia/bin:/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin

# Each pod's command is `pip install --target ... && python -m snakemake ...`: both names must exist.
RUN python3 -c "import sys; assert sys.version_info >= (3, 11), 'cellscale needs Python 3.11+, not ' + sys.version"
RUN command -v python || ln -s "$(command -v python3)" /usr/local/bin/python
RUN command -v pip || { printf '#!/bin/sh\nexec python3 -m pip "$@"\n' > /usr/local/bin/pip && chmod +x /usr/local/bin/pip; }

WORKDIR /opt/cellscale
COPY pyproject.toml README.md ./
# src/cellscale/models: the shipped models (the checkout's top-level models/ is a link to it)
COPY src ./src
# The versions the GKE profile was tested with (tests/system/test_gke_*.py); the project's other dependencies
# follow pyproject.toml. Not the `model` extra: it would add tensorflow-cpu beside the base image's TensorFlow.
RUN python -m pip install ${TF_PACKAGE} ".[spatial]" \
      "keras==3.15.1" "ai-edge-litert==2.3.0" "numpy==2.4.6" "scipy==1.17.1" "scikit-image==0.26.0" "pandas==2.3.3" \
      "pyarrow==26.0.1" "tifffile==2026.3.3" "zarr==3.1.6" "ome-zarr==0.18.0" "spatialdata==0.7.2" "anndata==0.12.19" \
      "snakemake==9.27.1" "snakemake-storage-plugin-gcs==1.1.4" "snakemake-storage-plugin-fs==1.1.3" \
 && mkdir /opt/wheels \
 && python -m pip download --no-deps --dest /opt/wheels \
      "snakemake-storage-plugin-gcs==1.1.4" "snakemake-storage-plugin-fs==1.1.3" \
 && python -m snakemake --version \
 && python -c "import cellscale, keras, ai_edge_litert, tensorflow as tf; print('cellscale', cellscale.__file__, 'tf', tf.__version__)" \
 && python -c "from cellscale.segment.model import shipped_model; print('models', shipped_model('nuclear').parent)" \
 && rm -rf /opt/cellscale/build /opt/cellscale/src  # installed into site-packages: no second copy of the models

# The plugin makes every pod first run `pip install --target .snakemake/pip-deployments <the storage plugins
# installed where snakemake was started>`. Answer it offline from the wheels above, without dependencies (the
# image already has them, and they come first on sys.path): a second per job instead of a download.
ENV PIP_NO_INDEX=1 \
    PIP_NO_DEPS=1 \
    PIP_FIND_LINKS=/opt/wheels

# The plugin mounts an emptyDir at /workdir and runs each job there.
WORKDIR /workdir
