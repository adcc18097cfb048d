-- The ledger's index lists entries newest first, a page at a time, every filter served by
-- an index in that order, so that a page costs the same in year five as on day one.
-- `at` is an entry's time in milliseconds since 1970 (UTC); an index on (x, at) also holds
-- seq, so (at, seq) orders entries and a page goes on from the last one it showed.
ALTER TABLE ledger_entries ADD COLUMN at INTEGER NOT NULL DEFAULT 0;
UPDATE ledger_entries
   SET at = CAST(round((julianday(time) - 2440587.5) * 86400000.0) AS INTEGER)
 WHERE julianday(time) IS NOT NULL;

DROP INDEX ledger_entries_time;
DROP INDEX ledger_entries_user;
DROP INDEX ledger_entries_unit;
DROP INDEX ledger_entries_purpose;
DROP INDEX ledger_entries_outcome;
CREATE INDEX ledger_entries_at ON ledger_entries (at);
CREATE INDEX ledger_entries_user ON ledger_entries (user, at);
CREATE INDEX ledger_entries_unit ON ledger_entries (unit, at);
CREATE INDEX ledger_entries_purpose ON ledger_entries (purpose, at);
CREATE INDEX ledger_entries_kind ON ledger_entries (kind, at);
CREATE INDEX ledger_entries_outcome ON ledger_entries (outcome, at);

-- Each resource's entries in time order, and each entry's resources.
CREATE TABLE ledger_entry_resources_by_time (
    resource TEXT NOT NULL,
    at       INTEGER NOT NULL,
    seq      INTEGER NOT NULL,
    PRIMARY KEY (resource, at, seq)
) WITHOUT ROWID;
INSERT INTO ledger_entry_resources_by_time (resource, at, seq)
SELECT r.resource, e.at, r.seq FROM ledger_entry_resources r JOIN ledger_entries e ON e.seq = r.seq;
DROP TABLE ledger_entry_resources;
ALTER TABLE ledger_entry_resources_by_time RENAME TO ledger_entry_resources;
CREATE INDEX ledger_entry_resources_seq ON ledger_entry_resources (seq);

-- Each providing unit's entries (the uses of its resources) in time order: a steward's
-- ledger page without gathering every resource of the unit.
CREATE TABLE ledger_entry_providers (
    provider TEXT NOT NULL,
    at       INTEGER NOT NULL,
    seq      INTEGER NOT NULL,
    PRIMARY KEY (provider, at, seq)
) WITHOUT ROWID;
INSERT OR IGNORE INTO ledger_entry_providers (provider, at, seq)
SELECT rs.unit, r.at, r.seq FROM ledger_entry_resources r JOIN resources rs ON rs.code = r.resource;
