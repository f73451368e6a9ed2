"""Fields a job reads from Cloud Storage itself (``batches.read_fields: direct``).

When Snakemake stages a job's inputs from a bucket, its launcher asks Cloud Storage about every input file many
times, one request after another, and the job's pod about 13 times more (docs/cost.md, "Cloud Storage requests,
measured"). For a screen of 10^6 fields that is days of the launcher's time. A batch job that downloads its
fields itself makes one request a field (``Blob.download_to_filename``), and the launcher asks about none of them.

google-cloud-storage finds its credentials as usual (Workload Identity on GKE) and honours
``STORAGE_EMULATOR_HOST``.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

SCHEMES = ("gs", "gcs")


def split_uri(uri: str) -> tuple[str, str]:
    """``gs://bucket/key`` (or ``gcs://``, Snakemake's spelling) -> (bucket, key)."""
    parts = urlsplit(uri)
    key = parts.path.lstrip("/")
    if parts.scheme not in SCHEMES or not parts.netloc or not key:
        raise ValueError(f"not a Cloud Storage object: {uri!r} (expected gs://BUCKET/KEY)")
    return parts.netloc, key


def join(prefix: str, path: str) -> str:
    """The object a workflow path names under Snakemake's default storage prefix (``gs://bucket/folder``)."""
    return f"{prefix.rstrip('/')}/{str(path).lstrip('/')}"


def fetch(uris: list[str], dest: Path) -> dict[str, Path]:
    """Download each object to ``dest/<bucket>/<key>``, one request each; returns the local path of every object
    that exists (a missing one is left out, for its job to record as a failed field)."""
    from google.api_core.exceptions import NotFound
    from google.cloud import storage

    client = storage.Client()
    found: dict[str, Path] = {}
    for uri in uris:
        bucket, key = split_uri(uri)
        local = Path(dest) / bucket / key
        local.parent.mkdir(parents=True, exist_ok=True)
        try:
            client.bucket(bucket).blob(key).download_to_filename(str(local))
        except NotFound:
            local.unlink(missing_ok=True)  # the client leaves an empty file behind
            continue
        found[uri] = local
    return found
