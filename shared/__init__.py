"""scalebus's common library: wire schemas, the bus, config loading, telemetry and lifecycle.

The lowest layer: nothing here imports a service.
"""
