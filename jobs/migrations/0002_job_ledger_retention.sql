-- The ledger is pruned by age (jobs/ledger.h): the pruner looks up the
-- oldest rows, so they need an index on processed_at.
CREATE INDEX job_ledger_processed_at ON job_ledger (processed_at);
