-- PostgreSQL form of sqlite/0009_principal.sql: the same schema, with BIGINT for every integer and
-- byte-order ("C") collation for every text column, as SQLite compares.
-- Which copy of a mirrored Back End is the principal, in which term, and how many write
-- transactions this copy has committed. Both copies hold the row: a SQLite Back End writes
-- its mirror in the same transactions (see `store::mirror`), a PostgreSQL one streams it.
-- A failover to the other copy starts a new term, so the copy with the higher term is the
-- principal, and an old principal that returns (lower term) is fenced. `writes` tells a
-- SQLite mirror that missed a commit (it differs from the principal's) and is rebuilt.
CREATE TABLE backend_principal (
    id        BIGINT PRIMARY KEY CHECK (id = 1),
    term      BIGINT NOT NULL,
    principal TEXT COLLATE "C" NOT NULL CHECK (principal IN ('Primary', 'Mirror')),
    writes    BIGINT NOT NULL,
    -- 1: this copy was the principal and is being, or was, failed over from: it takes no
    -- more writes (every write transaction reads this row under the write lock first).
    fenced    BIGINT NOT NULL,
    -- This copy's `writes` when it took over (a forced failover's loss is what the old
    -- principal had committed beyond it), and that loss once the old principal was seen
    -- again (-1: not known yet).
    took_over_at BIGINT NOT NULL,
    lost_writes  BIGINT NOT NULL,
    changed_at BIGINT NOT NULL
);
INSERT INTO backend_principal (id, term, principal, writes, fenced, took_over_at, lost_writes, changed_at)
    VALUES (1, 0, 'Primary', 0, 0, 0, 0, 0);
