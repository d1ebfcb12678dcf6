"""The fault-injection suite: nothing lost, nothing counted twice.

`python -m chaos --size tiny|small|full [--database sqlite|postgresql] [--seed N] [--json F]`
(or `scripts/chaos.sh`) drives a generated stream of WCO DEC-DMS declaration events
(bridge.testkit.streams: many licences, redeliveries, reordering, amendments, invalidations and a
known set of unreadable or hostile messages) through the real bridge on a real mosquitto, a real
customs SOAP simulator and a real SQLite or PostgreSQL ledger, while it

- SIGKILLs the consumer (`python -m bridge.entrypoints.consumer`) at random moments and inside its
batch
  transactions, and starts it again (chaos.faults.ConsumerSupervisor);
- restarts mosquitto, whose persistence keeps the sessions and their queued QoS 1 messages;
- makes the customs simulator fail 30% of calls (HTTP 503 and 502, transient SOAP faults,
  answers after the client's timeout, connections dropped before and after storing) while the
  certificates of the licences, some issued during the run, go out through the outbox
  (`python -m bridge.entrypoints.cli sync`, run again and again as a scheduler would, some runs
  SIGKILLed);
- makes the ledger unavailable for a while (SQLite: another process holds its write lock past
  the bridge's busy timeout; PostgreSQL: the database refuses connections and its sessions are
  terminated), killing the consumer once more in the middle of it.

Afterwards (chaos.checks) the ledger, the simulator's store and the broker are compared with an
oracle computed from the stream alone (chaos.oracle, which shares no code with the ledger's
rules). Modules: sizes (what each size does), stream (customs' publisher), faults, run (the
orchestration), checks, oracle."""
