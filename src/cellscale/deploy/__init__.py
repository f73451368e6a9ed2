"""Where cellscale runs: the GKE cluster as code (:mod:`.gke`) and per-rule sizes from benchmark files."""
