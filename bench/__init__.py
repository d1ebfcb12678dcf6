"""Benchmarks against the machine's own limits (`python -m bench`, docs/performance.md).

Every workload measures the bridge and the limit that bounds it in the same run, on the same
machine, because absolute figures drift on shared machines:

- W1 write-off throughput: the consumer against a bare paho + lxml consumer (20 KB and 1 KB).
- W2 certificates: national files through mapping, validation, certificate XML and its XSD,
  against lxml validating the same certificates alone.
- W3 SOAP delivery: the outbox and zeep client against raw HTTP posts of the same envelopes.
- W4 latency: publish-to-committed at a fixed offered load, for the standalone consumer.
- W5 scale: write-offs on a ledger of many lines and movements against an empty one, and the
  reconciliation query against the bare SQL aggregate.
- W6 memory: the consumer's RSS across many messages.

Sizes: tiny (CI), small (minutes), full (the issue's sizes)."""

from bench import (
    w1_writeoffs,
    w2_certificates,
    w3_soap,
    w4_latency,
    w5_scale,
    w6_memory,
)

WORKLOADS = {
    "W1": w1_writeoffs,
    "W2": w2_certificates,
    "W3": w3_soap,
    "W4": w4_latency,
    "W5": w5_scale,
    "W6": w6_memory,
}
