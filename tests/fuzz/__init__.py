"""Fuzzing every service's HTTP API (ARCHITECTURE.md Invariant 4: no 500 for any input; bad input
gets a clear 4xx and changes nothing), its limits, and hand-written hostile inputs."""
