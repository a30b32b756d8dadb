"""The decision engine: pure functions and plain state, no I/O, time passed in by the caller."""
