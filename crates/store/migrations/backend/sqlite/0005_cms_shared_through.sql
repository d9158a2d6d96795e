-- What an active store shares with the store it replaced, for counting what was lost: the
-- old store's versions up to here are in it. A promoted standby shares its versions up to
-- `term_start`; a store rebuilt from an export shares what the export held, although its
-- own versions start again (its `term_start` is 0: every older replica is replaced).
-- -1: the same as `term_start`.
ALTER TABLE cms_role ADD COLUMN shared_through INTEGER NOT NULL DEFAULT -1;
