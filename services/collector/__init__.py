"""The collector: measures every target's load and publishes it as MetricSnapshots.

How it works (``service.Collector``):

- **Sources** (``sources/``, one module each behind the ``sources.base.Source`` protocol):
  ``scrape`` (Prometheus-text endpoints, counters turned into per-replica rates), ``prometheus``
  (PromQL instant queries), ``process`` (CPU and memory of local replica processes, plus configured requests),
  ``jetstream`` (consumer backlog), ``kafka`` (consumer-group lag) and ``kubernetes``
  (``metrics.k8s.io`` pod usage and requests).  Replicas, their endpoints and pids come from the
  actuator's TargetStatus messages (``discovery``).
- **Isolation**: each source runs in its own task (``runner.SourceRunner``) with its own
  interval, timeout and retry.  A failure becomes samples with ``quality`` ``stale`` (the last
  good value, while younger than ``max_stale_seconds``) or ``error``, with the error text, and
  a counter (``quality``, ``metrics``).
- **Pushed metrics**: applications publish ``MetricPush`` JSON on ``<prefix>.metrics.<target>``
  (``docs/metrics-push.md``); malformed pushes go to the dead-letter subject (``pushes``).
- **Snapshots**: one per owned target every ``snapshot_interval_seconds`` (all targets in one
  batch), plus one shortly after fresh pushes (``push.flush_seconds``), plus one at once
  (``urgent``) when a sample crosses a configured threshold (``target``).
- **Scale-out**: instances heartbeat into a NATS KV bucket and split the targets by rendezvous
  hashing over the live members (``ownership``); a dead instance's targets move after its TTL.
"""
