-- The people and enterprises of reads too large to list in their ledger entry. Each set is
-- kept once, under the digest its entries carry (`subject_set`), as the sorted 16-byte keyed
-- hashes; it is written before the entry that names it, and checked against the digest
-- when read. Not derived: the ledger holds only the digest.
CREATE TABLE subject_sets (
    digest   TEXT PRIMARY KEY,
    count    INTEGER NOT NULL,
    subjects BLOB NOT NULL
);

-- Which entries name which set (derived from the ledger, like the rest of its index).
CREATE TABLE ledger_subject_sets (
    seq    INTEGER PRIMARY KEY,
    digest TEXT NOT NULL
);
CREATE INDEX ledger_subject_sets_digest ON ledger_subject_sets (digest);
