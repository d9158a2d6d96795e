-- PostgreSQL form of sqlite/0001_cms.sql: the same schema, with BIGINT for every integer and
-- byte-order ("C") collation for every text column, as SQLite compares.
-- The Central Management store: configuration items, each stamped with the version that
-- last wrote it, so that "changes since version v" is one indexed range scan.
CREATE TABLE cms_item (
    key     TEXT COLLATE "C" PRIMARY KEY,
    value   TEXT COLLATE "C",               -- NULL: deleted (a tombstone replicas must see)
    version BIGINT NOT NULL
);
CREATE INDEX cms_item_version ON cms_item (version);

-- One row per version: when it was created, by which master epoch, and why.
CREATE TABLE cms_version (
    version     BIGINT PRIMARY KEY,
    epoch       BIGINT NOT NULL,
    created_at  BIGINT NOT NULL, -- unix milliseconds
    description TEXT COLLATE "C" NOT NULL
);

-- The master lease: whoever holds an unexpired lease is the one writer of the store.
CREATE TABLE cms_master_lease (
    id          BIGINT PRIMARY KEY CHECK (id = 1),
    holder      TEXT COLLATE "C" NOT NULL,
    epoch       BIGINT NOT NULL,
    acquired_at BIGINT NOT NULL,
    renewed_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);

-- What the master last heard from each replica.
CREATE TABLE cms_replica_status (
    fqdn               TEXT COLLATE "C" PRIMARY KEY,
    version            BIGINT NOT NULL,
    last_status_report BIGINT NOT NULL,
    product_version    TEXT COLLATE "C" NOT NULL
);
