-- A server's local replica of the Central Management store.
CREATE TABLE replica_item (
    key     TEXT PRIMARY KEY,
    value   TEXT,
    version INTEGER NOT NULL
);

-- The replica's position: the CMS version it holds and the master epoch it follows.
CREATE TABLE replica_state (
    id                   INTEGER PRIMARY KEY CHECK (id = 1),
    version              INTEGER NOT NULL,
    epoch                INTEGER NOT NULL,
    master_fqdn          TEXT NOT NULL,
    last_update_creation INTEGER NOT NULL,
    last_heartbeat       INTEGER NOT NULL
);
INSERT INTO replica_state VALUES (1, 0, 0, '', 0, 0);
