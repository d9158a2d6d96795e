-- The history of the configuration line this store holds (see `store::history`): every
-- term of the line, with the version of the line it started after. A store that has
-- never been failed over has none recorded: the root line, term 0 from version 0.
CREATE TABLE cms_term (
    term  INTEGER PRIMARY KEY,
    start INTEGER NOT NULL
);
-- Stores from before: the terms their versions were written in, and the active store's
-- own term (which may have no version yet).
INSERT INTO cms_term (term, start)
    SELECT epoch >> 32, MIN(version) - 1 FROM cms_version GROUP BY epoch >> 32;
INSERT OR IGNORE INTO cms_term (term, start)
    SELECT epoch_floor >> 32, term_start FROM cms_role WHERE mode <> 'Backup';
-- The term whose line cut a lost version off (0: recorded before terms were kept).
ALTER TABLE cms_lost_version ADD COLUMN cut_by_term INTEGER NOT NULL DEFAULT 0;
