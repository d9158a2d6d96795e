-- Readers that keep a derived view of the replica (which users are homed where) catch up
-- by asking for the items changed after the version they last saw.
CREATE INDEX replica_item_version ON replica_item (version);
