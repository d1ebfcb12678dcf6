"""The ledger's rules for customs write-offs: may this write-off happen, and what moves.

Pure: `batch.decide` takes a batch of declaration events and a snapshot of the ledger state
they touch (`decision.LedgerSnapshot`), and returns what to write (`decision.Decision`:
movements, usage, refusals, declaration states, alerts for the authority, licence status
changes) and the outcome of every message with a result for each of its documents.
`dry_run.availability` answers the same question without writing anything (customs'
CheckAvailability) with the same checks (`checks`). No database, clock or broker here; the
plain data the store keeps is bridge.core.ledger_state.

Licence types: individual and global licences have, per line, a quantity ceiling, a value
ceiling or both (as issued), and a write-off that would exceed what remains is refused whole.
National and Union general authorisations have no ceiling: their usage is recorded (movement
kind `record`), never refused for quantity, but their conditions hold (the exporter is the
registered holder; EU001's destinations). An open licence (no goods lines) is written off as a
whole, on line 0, against its licence-level ceilings and destinations.

Contingency: goods released against a licence customs hold no certificate of (the bridge or the
link was down) have left; their write-off is recorded all the same, flagged `contingency`, with
an alert when it overdraws or the licence did not allow it. The dry run, asked before release,
keeps refusing (docs/contingency.md).

Exactly once: what a declaration writes off is kept per key (MRN, goods item, document code,
document reference) in `usage`. A redelivered message, or the same MRN and version again,
changes nothing; a newer version moves each key by the difference and reverses keys that
disappeared; an older one is stale; an invalidation reverses everything the MRN wrote off and
is remembered, so that a release arriving after it writes nothing. An amendment that arrives
before its release is held and applied right after the release.

Import from the modules themselves (`bridge.core.writeoff.batch import decide`, ...)."""
