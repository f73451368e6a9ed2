"""Running cellscale in the cloud: GKE cluster set-up (``gke``) and a local Kubernetes stand-in (``kube_emulator``)."""
