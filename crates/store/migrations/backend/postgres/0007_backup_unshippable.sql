-- PostgreSQL form of sqlite/0007_backup_unshippable.sql: the same schema, with BIGINT for every integer and
-- byte-order ("C") collation for every text column, as SQLite compares.
-- Changes the Backup Service could not ship to the partner (larger than the backup link
-- takes, or refused by the partner): recorded with the reason and skipped, so that one item
-- never stops shipping for every other user of the pool. Status lists them; a disaster
-- failover counts them as lost.
CREATE TABLE backup_unshippable (
    module      TEXT COLLATE "C"    NOT NULL,
    seq         BIGINT NOT NULL,
    sip         TEXT COLLATE "C"    NOT NULL,
    item_key    TEXT COLLATE "C"    NOT NULL,
    bytes       BIGINT NOT NULL,
    reason      TEXT COLLATE "C"    NOT NULL,
    recorded_at BIGINT NOT NULL,
    PRIMARY KEY (module, seq)
);
