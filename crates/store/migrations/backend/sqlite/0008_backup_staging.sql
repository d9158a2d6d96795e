-- A full resync arrives in parts (each under the backup link's body limit): the parts are
-- staged here and replace the module's backup copy in one transaction when the last one
-- arrives, so a resync cut short leaves the copy as it was, never half replaced.
CREATE TABLE backup_staging_head (
    source_pool TEXT    NOT NULL,
    module      TEXT    NOT NULL,
    resync      TEXT    NOT NULL,
    next_part   INTEGER NOT NULL,
    PRIMARY KEY (source_pool, module)
);

CREATE TABLE backup_staging (
    source_pool  TEXT    NOT NULL,
    module       TEXT    NOT NULL,
    sip          TEXT    NOT NULL,
    key          TEXT    NOT NULL,
    value        TEXT    NOT NULL,
    committed_at INTEGER NOT NULL,
    PRIMARY KEY (source_pool, module, sip, key)
);
