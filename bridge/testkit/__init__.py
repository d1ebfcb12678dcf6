"""Test and benchmark kit: what the project's own tests, the fault-injection suite (chaos/), the
fuzz targets (fuzz/) and the benchmarks (`python -m bench`) share.

Synthetic data, pure (bytes and objects; no file, socket or database), deterministic per seed:
- licences: licences as national authorities issue them, and the reference data behind them;
- declaration_plans: declarations planned against them, with what each writes off;
- declarations: a plan written as WCO DEC-DMS XML, and cancellation requests;
- streams: declaration event streams with redeliveries, reordering, amendments, invalidations
  and unreadable messages, and the ground truth the ledger must reach after one;
- national_files: licences in the national formats mappings/*.yaml read;
- sample_licences: the licences the real WCO sample declarations quote;
- envelopes: MQTT event envelopes as documents to spoil member by member.

Outside effects, for bench/ and chaos/ only:
- processes: children in process groups of their own, stopped by group;
- mqtt_sessions: the customs side's MQTT clients on a persistent session."""
