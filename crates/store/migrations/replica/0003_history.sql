-- The history of the configuration line the replica holds (JSON, see `store::history`);
-- empty for a replica from before: the line of the term it follows.
ALTER TABLE replica_state ADD COLUMN history TEXT NOT NULL DEFAULT '';
