"""A Cloud Storage stand-in for the tests: gcp-storage-emulator (a pip package) serving the JSON API on 127.0.0.1,
objects kept on disk, every request recorded with the client that made it and its billing class.

The real snakemake-storage-plugin-gcs and the real google-cloud-storage client talk to it: the client sends every
request to ``STORAGE_EMULATOR_HOST`` when that is set, with anonymous credentials. Cloud Storage itself cannot be
reached from here (no account, no internet), so the emulator is the only part that stands in.

Each client names itself by a first path segment of its endpoint (``STORAGE_EMULATOR_HOST=http://127.0.0.1:PORT/pod-x``
makes every URL ``/pod-x/storage/v1/...``): :class:`GcsEmulator` strips it before the emulator routes the request
and records it as the request's client, so each pod's and the launcher's operations are counted apart.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from gcp_storage_emulator import server as _server
from gcp_storage_emulator.server import create_server
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

_API = re.compile(r"^/(?:upload/|download/)?storage/v1/b"
                  r"(?:/(?P<bucket>[^/?]+)(?P<objects>/o(?:/(?P<object>[^?]+))?)?)?")


@dataclass(frozen=True)
class Request:
    client: str    # the first path segment the client put before the API's path ("" without one)
    method: str
    path: str      # as the emulator routes it: /storage/v1/..., /upload/..., /download/...
    cls: str       # Cloud Storage's billing class: "A", "B" or "free"
    op: str        # the JSON API method, e.g. "objects.get", "objects.list", "buckets.get"
    object: str    # the object's name ("" for bucket operations and listings)
    prefix: str    # a listing's prefix ("" otherwise)
    t: float       # when it arrived (time.time())


def operation(method: str, path: str) -> tuple[str, str, str]:
    """The JSON API method a request calls, its billing class and its object's name.

    Classes as Cloud Storage's price list defines them (cloud.google.com/storage/pricing, "Operations by class"):
    class A is every insert, patch and update and objects.list and buckets.list; class B is every get (an object's
    metadata or its media, a bucket's metadata); deletes are free."""
    m = _API.match(path)
    if m is None:
        raise ValueError(f"not a Cloud Storage JSON API request: {method} {path}")
    obj = unquote(m["object"] or "")
    if m["bucket"] is None:
        op = "buckets.list" if method == "GET" else "buckets.insert"
    elif m["objects"] is None:
        op = {"GET": "buckets.get", "DELETE": "buckets.delete"}.get(method, "buckets.patch")
    elif m["object"] is None:
        op = "objects.list" if method == "GET" else "objects.insert"
    else:
        op = {"GET": "objects.get", "DELETE": "objects.delete", "PUT": "objects.insert"}.get(method, "objects.patch")
    cls = "free" if op.endswith(".delete") else "B" if op.endswith(".get") else "A"
    return op, cls, obj


class GcsEmulator:
    """gcp-storage-emulator on a free port of 127.0.0.1, one bucket, objects on disk under ``root``.

    Use as a context manager. ``endpoint(client)`` is the ``STORAGE_EMULATOR_HOST`` a client sets to be counted as
    ``client``; ``requests`` holds every request so far; ``path(key)`` is where an object's bytes are on disk."""

    _lock = threading.Lock()
    _recorders: dict[int, "GcsEmulator"] = {}
    _patched = False

    def __init__(self, root: Path, bucket: str = "cellscale-test"):
        self.root, self.bucket = Path(root), bucket
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.requests: list[Request] = []
        self._server = None

    # -- lifecycle -----------------------------------------------------------------------------------------------
    def __enter__(self) -> "GcsEmulator":
        self._patch_router()
        GcsEmulator._recorders[self.port] = self
        self._server = create_server("127.0.0.1", self.port, in_memory=False, default_bucket=self.bucket,
                                     data_dir=str(self.root))
        self._server.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.stop()
        GcsEmulator._recorders.pop(self.port, None)

    @classmethod
    def _patch_router(cls) -> None:
        """Wrap the emulator's router once: strip a client's path segment, record the request, then route it."""
        with cls._lock:
            if cls._patched:
                return
            handle = _server.Router.handle

            def recording_handle(router, method):
                rh = router._request_handler
                recorder = cls._recorders.get(rh.server.server_address[1])
                if recorder is not None:
                    recorder._record(rh, rh.headers.get("x-http-method-override") or method)
                return handle(router, method)

            _server.Router.handle = recording_handle
            cls._patched = True

    def _record(self, rh, method: str) -> None:
        client = ""
        first = rh.path.split("/", 2)[1] if rh.path.startswith("/") else ""
        if first and first not in ("storage", "upload", "download", "batch") and "?" not in first:
            client = first
            rh.path = rh.path[len(first) + 1:]
        url = urlsplit(rh.path)
        if url.path in ("/", "/wipe"):
            return
        op, cls, obj = operation(method, url.path)
        prefix = parse_qs(url.query).get("prefix", [""])[0] if op == "objects.list" else ""
        with self._lock:
            self.requests.append(Request(client, method, url.path, cls, op, obj, prefix, time.time()))

    # -- use -----------------------------------------------------------------------------------------------------
    def endpoint(self, client: str = "") -> str:
        return f"http://127.0.0.1:{self.port}" + (f"/{client}" if client else "")

    def client(self) -> storage.Client:
        """A google-cloud-storage client of the emulator (counted as client "setup")."""
        return storage.Client(project="test", credentials=AnonymousCredentials(),
                              client_options={"api_endpoint": self.endpoint("setup")})

    def upload_tree(self, local: Path, prefix: str) -> None:
        """Every file under ``local`` as an object ``prefix/<relative path>``."""
        bucket = self.client().bucket(self.bucket)
        for f in sorted(p for p in Path(local).rglob("*") if p.is_file()):
            bucket.blob(f"{prefix}/{f.relative_to(local).as_posix()}").upload_from_filename(str(f))

    def path(self, key: str = "") -> Path:
        """Where the emulator keeps an object's bytes (or a "folder" of them): the bucket's folder on disk."""
        return self.root / ".cloudstorage" / self.bucket / key
