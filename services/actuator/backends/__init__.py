"""Backends change the replica count of a target: local processes or a Kubernetes scale subresource."""
