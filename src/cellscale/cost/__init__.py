"""What a run costs and how to size the cluster for it (``cellscale plan``, ``results/cost.tsv``).

- :mod:`.prices`: dated price tables as data (``config/prices/*.yaml``): machine types, spot and on-demand,
  storage, network, the cluster fee.
- :mod:`.throughput`: per-rule throughput profiles per machine type (fixed seconds per job, seconds per Mpx,
  memory), each figure labelled measured or assumed, fitted from the rules' ``benchmark:`` files.
- :mod:`.benchmarks`, :mod:`.jobs`: the rules' benchmark files, and one row per job of a run with the megapixels it
  processed (from the run's plans).
- :mod:`.runcost`: what a run cost (``results/cost.tsv``): each job priced on the machine type a profile gives its
  rule.
- :mod:`.model`: the analytic model of a GKE run (workload, overheads, node pools -> wall time and cost).
- :mod:`.plan`: ``cellscale plan``, the PuLP program choosing pools, shard size and ``jobs`` for a deadline or a
  budget, and the Snakemake workflow profile it writes.
- :mod:`.simulate`: a SimPy simulation of a planned run (autoscaler, start-up, spot preemption, retries).

Knows nothing of Snakemake: it reads benchmark tables and plans as files.
"""
