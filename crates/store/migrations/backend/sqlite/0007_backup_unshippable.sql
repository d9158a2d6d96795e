-- Changes the Backup Service could not ship to the partner (larger than the backup link
-- takes, or refused by the partner): recorded with the reason and skipped, so that one item
-- never stops shipping for every other user of the pool. Status lists them; a disaster
-- failover counts them as lost.
CREATE TABLE backup_unshippable (
    module      TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    sip         TEXT    NOT NULL,
    item_key    TEXT    NOT NULL,
    bytes       INTEGER NOT NULL,
    reason      TEXT    NOT NULL,
    recorded_at INTEGER NOT NULL,
    PRIMARY KEY (module, seq)
);
