"""Price tables as data: ``config/prices/<name>.yaml``, each with its date and source.

A table prices whole machines (vCPUs, memory and GPUs together) on demand and as spot, plus storage, network and
the GKE cluster fee. Users add their own table (same keys) and pass its path.

Format::

    name: gke-us-central1
    region: us-central1
    date: "2026-11-20"            # when the prices were read
    source: "where they were read (URL, catalog and commit)"
    currency: USD
    notes: "..."
    machines:
      g2-standard-4: {vcpus: 4, memory_gib: 16, gpu: L4, gpus: 1, on_demand: 0.7068, spot: 0.2827}
      e2-standard-4: {vcpus: 4, memory_gib: 16, on_demand: 0.134, spot: 0.0402}
    storage:                       # USD
      pd_balanced_gb_month: 0.10
      pd_standard_gb_month: 0.04
      gcs_standard_gb_month: 0.020
      gcs_class_a_per_10k: 0.05    # writes, lists
      gcs_class_b_per_10k: 0.004   # reads
    network:
      egress_internet_gb: 0.12
      gcs_same_region_gb: 0.0      # pods and bucket in one region: free
    cluster:
      management_fee_usd_h: 0.10
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

PRICE_DIR = Path("config/prices")   # relative to the workflow's folder, like the other config files
# the shipped tables travel with the package (the checkout's config/prices links here), so a bare name also works
# outside a checkout: ``cellscale plan`` in any folder
SHIPPED_PRICES = Path(__file__).parent / "tables" / "prices"
DEFAULT_TABLE = "gke-us-central1"


@dataclass(frozen=True)
class Machine:
    """One machine type and what an hour of it costs (the whole machine, its GPUs included)."""

    name: str
    vcpus: int
    memory_gib: float
    on_demand: float           # USD per hour
    spot: float                # USD per hour
    gpu: str | None = None     # "L4", "T4", "A100-40GB", "H100-80GB"; None for CPU machines
    gpus: int = 0

    def hourly(self, spot: bool) -> float:
        return self.spot if spot else self.on_demand


@dataclass(frozen=True)
class PriceTable:
    name: str
    region: str
    date: str
    source: str
    currency: str
    machines: dict[str, Machine]
    storage: dict[str, float]
    network: dict[str, float]
    cluster: dict[str, float]
    notes: str = ""
    path: str = ""
    extra: dict = field(default_factory=dict)   # any further top-level keys a table carries (e.g. a paper's figures)

    def node(self, instance_type: str, gpus: int = 0) -> Machine:
        """The machine a pod placed on Kubernetes instance type ``instance_type`` with ``gpus`` GPUs runs on: the
        table's entry of that name, or for GPUs attached to an N1 type the entry ``<type>-<gpu>`` (n1-standard-4 with
        a T4 is ``n1-standard-4-t4``; :data:`ATTACHED_GPUS`), when the table has exactly one."""
        own = self.machines.get(instance_type)
        if own is not None and (own.gpus or not gpus):
            return own
        attached = [m for m in (self.machines.get(instance_type + suffix) for suffix in ATTACHED_GPUS) if m]
        if gpus and len(attached) == 1:
            return attached[0]
        if gpus and attached:
            raise KeyError(f"price table {self.name!r}: {instance_type} with GPUs is one of "
                           f"{', '.join(m.name for m in attached)}; which one is not known")
        return self.machine(instance_type)

    def machine(self, name: str) -> Machine:
        try:
            return self.machines[name]
        except KeyError:
            raise KeyError(f"price table {self.name!r} ({self.path}) has no machine type {name!r}; it has "
                           f"{', '.join(sorted(self.machines))}") from None


#: the price keys' suffixes of GPUs attached to an N1 machine type, whose Kubernetes instance type is the N1 type's
ATTACHED_GPUS = ("-t4", "-l4", "-v100", "-p4", "-p100")
_REQUIRED = ("name", "date", "source", "currency", "machines")
_MACHINE_KEYS = {"vcpus", "memory_gib", "on_demand", "spot", "gpu", "gpus"}


def read_named_yaml(name_or_path: str | Path, folder: Path | str, what: str,
                    shipped: Path | None = None) -> tuple[Path, dict]:
    """The YAML document at a path as given, or at ``<folder>/<name>.yaml`` for a bare name such as
    ``gke-us-central1``, else at ``<shipped>/<name>.yaml`` (the package's own tables); a missing file is an error
    naming it and the names each folder has (``what``: "price table", "throughput profile")."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml") and not path.exists():
        path = Path(folder) / f"{name_or_path}.yaml"
        if not path.exists() and shipped is not None and (shipped / path.name).exists():
            path = shipped / path.name
    if not path.exists():
        have = "; ".join(f"{what}s in {d}: {', '.join(sorted(p.stem for p in Path(d).glob('*.yaml'))) or 'none'}"
                         for d in dict.fromkeys([Path(folder)] + ([shipped] if shipped is not None else [])))
        raise FileNotFoundError(f"{what} {path}: no such file ({have})")
    return path, yaml.safe_load(path.read_text()) or {}


def load_prices(name_or_path: str | Path = DEFAULT_TABLE, folder: Path | str = PRICE_DIR) -> PriceTable:
    """Read and check a price table; a missing key or a negative price is an error naming the file."""
    path, doc = read_named_yaml(name_or_path, folder, "price table", SHIPPED_PRICES)
    missing = [k for k in _REQUIRED if k not in doc]
    if missing:
        raise ValueError(f"price table {path}: missing {', '.join(missing)}")
    machines = {}
    for name, m in doc["machines"].items():
        unknown = set(m) - _MACHINE_KEYS
        if unknown or not {"vcpus", "memory_gib", "on_demand", "spot"} <= set(m):
            raise ValueError(f"price table {path}: machine {name!r} needs vcpus, memory_gib, on_demand, spot "
                             f"(optional gpu, gpus){'; unknown ' + ', '.join(sorted(unknown)) if unknown else ''}")
        if min(m["on_demand"], m["spot"]) < 0:
            raise ValueError(f"price table {path}: machine {name!r} has a negative price")
        machines[name] = Machine(name=name, vcpus=int(m["vcpus"]), memory_gib=float(m["memory_gib"]),
                                 on_demand=float(m["on_demand"]), spot=float(m["spot"]), gpu=m.get("gpu"),
                                 gpus=int(m.get("gpus", 1 if m.get("gpu") else 0)))
    known = set(_REQUIRED) | {"region", "storage", "network", "cluster", "notes"}
    return PriceTable(name=str(doc["name"]), region=str(doc.get("region", "")), date=str(doc["date"]),
                      source=str(doc["source"]), currency=str(doc["currency"]), machines=machines,
                      storage={k: float(v) for k, v in (doc.get("storage") or {}).items()},
                      network={k: float(v) for k, v in (doc.get("network") or {}).items()},
                      cluster={k: float(v) for k, v in (doc.get("cluster") or {}).items()},
                      notes=str(doc.get("notes", "")), path=str(path),
                      extra={k: v for k, v in doc.items() if k not in known})
