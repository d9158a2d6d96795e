-- PostgreSQL form of sqlite/0008_backup_staging.sql: the same schema, with BIGINT for every integer and
-- byte-order ("C") collation for every text column, as SQLite compares.
-- A full resync arrives in parts (each under the backup link's body limit): the parts are
-- staged here and replace the module's backup copy in one transaction when the last one
-- arrives, so a resync cut short leaves the copy as it was, never half replaced.
CREATE TABLE backup_staging_head (
    source_pool TEXT COLLATE "C"    NOT NULL,
    module      TEXT COLLATE "C"    NOT NULL,
    resync      TEXT COLLATE "C"    NOT NULL,
    next_part   BIGINT NOT NULL,
    PRIMARY KEY (source_pool, module)
);

CREATE TABLE backup_staging (
    source_pool  TEXT COLLATE "C"    NOT NULL,
    module       TEXT COLLATE "C"    NOT NULL,
    sip          TEXT COLLATE "C"    NOT NULL,
    key          TEXT COLLATE "C"    NOT NULL,
    value        TEXT COLLATE "C"    NOT NULL,
    committed_at BIGINT NOT NULL,
    PRIMARY KEY (source_pool, module, sip, key)
);
