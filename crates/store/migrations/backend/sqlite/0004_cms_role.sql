-- What the Central Management store in this Back End is: the active store (its Front Ends
-- contend for the master lease), a store being moved away (read-only: the lease is kept,
-- writes are refused), or a standby (the Backup Service keeps it current; no lease is
-- ever taken here). No row: a store installed before this table, whose role follows
-- from whether a master lease was ever taken in it.
CREATE TABLE cms_role (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    mode        TEXT NOT NULL CHECK (mode IN ('Active', 'Moving', 'Backup')),
    -- A lease taken here gets an epoch above this: a failover starts a new term, and every
    -- epoch of a term is above every epoch of the terms before it.
    epoch_floor INTEGER NOT NULL,
    -- The version this store held when it became active: what it shares with the store it
    -- replaced. Versions of an older term above it never reached this store.
    term_start  INTEGER NOT NULL,
    -- Moving: the pool the store is moving to. Backup: the pool of the active store.
    other_pool  TEXT NOT NULL,
    changed_at  INTEGER NOT NULL,
    reason      TEXT NOT NULL
);

-- Versions a master of this store committed that never reached the store that replaced
-- it (a disaster failover of the CMS), kept when it was fenced, for the operator.
CREATE TABLE cms_lost_version (
    version     INTEGER NOT NULL,
    epoch       INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    description TEXT NOT NULL,
    keys        TEXT NOT NULL,  -- JSON array of the keys the version wrote
    lost_at     INTEGER NOT NULL,
    PRIMARY KEY (version, epoch)
);

-- Central Management store failovers whose target is this Back End: the durable record a
-- crashed run resumes from, or `-Restore` clears.
CREATE TABLE cms_failover (
    id         INTEGER PRIMARY KEY,
    record     TEXT NOT NULL,   -- JSON
    updated_at INTEGER NOT NULL
);
