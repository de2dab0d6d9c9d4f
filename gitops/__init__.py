"""gitops: a GitOps deployment daemon with no control plane."""

__version__ = "0.1.0"
