"""What a run costs and how to size the cluster for it (``cellscale plan``, ``results/cost.tsv``).

- :mod:`.prices`: dated price tables as data (``config/prices/*.yaml``): machine types, spot and on-demand,
  storage, network, the cluster fee.
- :mod:`.throughput`: per-rule throughput profiles per machine type (fixed seconds per job, seconds per Mpx,
  memory), each figure labelled measured or assumed, fitted from the rules' ``benchmark:`` files.

Knows nothing of Snakemake: it reads benchmark tables and plans as files.
"""
