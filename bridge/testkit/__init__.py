"""Test and benchmark kit: deterministic synthetic data the project's own tests, the fault-
injection suite and the benchmarks (`python -m bench`) share. Pure: it makes bytes and objects
and touches no file, socket or database."""
