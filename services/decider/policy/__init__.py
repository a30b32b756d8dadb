"""Scaling policies: the HPA-shaped YAML format, its validation, compilation and hot reload."""
