"""The demo that `make run` shows: a small HTTP workload and a bounded load generator."""
