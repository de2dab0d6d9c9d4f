"""Kubernetes Services: allocation of virtual IPs and nodePorts."""
