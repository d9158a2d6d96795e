-- The Central Management store: configuration items, each stamped with the version that
-- last wrote it, so that "changes since version v" is one indexed range scan.
CREATE TABLE cms_item (
    key     TEXT PRIMARY KEY,
    value   TEXT,               -- NULL: deleted (a tombstone replicas must see)
    version INTEGER NOT NULL
);
CREATE INDEX cms_item_version ON cms_item (version);

-- One row per version: when it was created, by which master epoch, and why.
CREATE TABLE cms_version (
    version     INTEGER PRIMARY KEY,
    epoch       INTEGER NOT NULL,
    created_at  INTEGER NOT NULL, -- unix milliseconds
    description TEXT NOT NULL
);

-- The master lease: whoever holds an unexpired lease is the one writer of the store.
CREATE TABLE cms_master_lease (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    holder      TEXT NOT NULL,
    epoch       INTEGER NOT NULL,
    acquired_at INTEGER NOT NULL,
    renewed_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);

-- What the master last heard from each replica.
CREATE TABLE cms_replica_status (
    fqdn               TEXT PRIMARY KEY,
    version            INTEGER NOT NULL,
    last_status_report INTEGER NOT NULL,
    product_version    TEXT NOT NULL
);
