-- PostgreSQL form of sqlite/0010_cms_vote.sql: the same schema, with BIGINT for every integer and
-- byte-order ("C") collation for every text column, as SQLite compares.
-- The vote a standby Central Management store gives the active store's master: the pool
-- it was given to, for which term, until when (unix ms, the voting server's clock), and
-- the highest term an active master ever renewed it in. A vote is exclusive while it
-- lasts, so that the master on one side of a network cut and a failover on the other can
-- never both count this store (see `cms::witness`).
CREATE TABLE cms_vote (
    id           BIGINT PRIMARY KEY CHECK (id = 1),
    pool         TEXT COLLATE "C" NOT NULL,
    term         BIGINT NOT NULL,
    until_ms     BIGINT NOT NULL,
    highest_term BIGINT NOT NULL,
    -- In an active store: when an operator's -Force made it active without the witness's
    -- vote (0: it was not). Its master then writes on its lease alone until a voter
    -- answers again.
    forced_at    BIGINT NOT NULL
);
INSERT INTO cms_vote (id, pool, term, until_ms, highest_term, forced_at) VALUES (1, '', 0, 0, 0, 0);
