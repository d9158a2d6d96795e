-- The stored data of the users homed on this pool (contact lists, meetings, settings:
-- module PresenceFocus; meeting content: module DataConf). One row per item; a content
-- item's value describes a file kept in the pool's file store.
CREATE TABLE user_item (
    sip        TEXT NOT NULL,
    key        TEXT NOT NULL,
    module     TEXT NOT NULL,
    value      TEXT NOT NULL,
    updated_at INTEGER NOT NULL,   -- unix milliseconds
    PRIMARY KEY (sip, key)
);

-- Every committed change of this pool's users' data, in commit order. Written in the same
-- transaction as the change itself: the Backup Service's export queue and its RPO clock.
CREATE TABLE change_log (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    module       TEXT NOT NULL,
    sip          TEXT NOT NULL,
    key          TEXT NOT NULL,
    value        TEXT,             -- NULL: deleted
    committed_at INTEGER NOT NULL
);
CREATE INDEX change_log_module ON change_log (module, seq);

-- How far this pool's Backup Service has shipped each module to the partner pool.
CREATE TABLE backup_export (
    module       TEXT PRIMARY KEY,
    target_pool  TEXT NOT NULL,
    acked_seq    INTEGER NOT NULL,
    last_sync_at INTEGER,
    last_error   TEXT,
    resync       INTEGER NOT NULL DEFAULT 0  -- 1: a full resync was asked for
);

-- The backup copy of the partner pool's users, kept apart from this pool's own users.
CREATE TABLE backup_item (
    source_pool  TEXT NOT NULL,
    sip          TEXT NOT NULL,
    key          TEXT NOT NULL,
    module       TEXT NOT NULL,
    value        TEXT NOT NULL,
    committed_at INTEGER NOT NULL, -- when the change committed at the source
    imported_at  INTEGER NOT NULL, -- when it reached this copy
    PRIMARY KEY (source_pool, sip, key)
);

-- How far each module of each source pool has been imported here.
CREATE TABLE backup_import (
    source_pool    TEXT NOT NULL,
    module         TEXT NOT NULL,
    applied_seq    INTEGER NOT NULL,
    last_import_at INTEGER NOT NULL,
    PRIMARY KEY (source_pool, module)
);

-- One active exporter per pool: the Front End holding this lease runs the Backup Service.
CREATE TABLE backup_lease (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    holder     TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);

-- SIP registrations (bindings) of the users this pool serves, shared by its Front Ends.
CREATE TABLE registration (
    aor        TEXT NOT NULL,
    contact    TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    mode       TEXT NOT NULL,
    server     TEXT NOT NULL,
    PRIMARY KEY (aor, contact)
);
