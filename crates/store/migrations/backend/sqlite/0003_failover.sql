-- Users whose writes this Back End refuses, by home pool: set when a failover or failback
-- moves them away from this pool, cleared when their backup copy here becomes their
-- writable copy again. Checked inside every write transaction, so a write either commits
-- before the fence (and is shipped by the Backup Service) or is refused.
CREATE TABLE dr_fence (
    home_pool TEXT PRIMARY KEY,
    reason    TEXT NOT NULL,
    since     INTEGER NOT NULL
);
