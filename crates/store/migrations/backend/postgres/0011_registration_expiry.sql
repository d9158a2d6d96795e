-- Expired bindings are purged by every Front End's registrar in bounded rounds
-- (`BackEnd::purge_expired_bindings`): find them without a scan of the whole table.
CREATE INDEX registration_expires_at ON registration (expires_at);
