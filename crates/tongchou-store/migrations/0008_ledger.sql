-- The audit ledger's companions in the metadata database. The ledger itself lives in
-- ledger/ (segments, tree, checkpoints); these tables are derived from it or feed it.

-- access_events becomes the outbox of the access crate: each event is written in the same
-- transaction as its change, then moved into the ledger, which notes the entry here.
ALTER TABLE access_events ADD COLUMN front_door TEXT;
ALTER TABLE access_events ADD COLUMN ledger_entry INTEGER;
CREATE INDEX access_events_unrecorded ON access_events (id) WHERE ledger_entry IS NULL;

-- A searchable copy of every entry's who/what/why, rebuilt from the ledger when behind.
CREATE TABLE ledger_entries (
    seq        INTEGER PRIMARY KEY,
    time       TEXT NOT NULL,
    kind       TEXT NOT NULL,
    front_door TEXT NOT NULL,
    user       TEXT,
    unit       TEXT,
    purpose    TEXT,
    outcome    TEXT NOT NULL,
    rows       INTEGER,
    subjects   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX ledger_entries_time ON ledger_entries (time);
CREATE INDEX ledger_entries_user ON ledger_entries (user, time);
CREATE INDEX ledger_entries_unit ON ledger_entries (unit, time);
CREATE INDEX ledger_entries_purpose ON ledger_entries (purpose, time);
CREATE INDEX ledger_entries_outcome ON ledger_entries (outcome, time);

CREATE TABLE ledger_entry_resources (
    resource TEXT NOT NULL,
    seq      INTEGER NOT NULL,
    PRIMARY KEY (resource, seq)
) WITHOUT ROWID;

-- Keyed hashes of the people and enterprises each entry touched (never the IDs).
CREATE TABLE ledger_subjects (
    subject TEXT NOT NULL,
    seq     INTEGER NOT NULL,
    PRIMARY KEY (subject, seq)
) WITHOUT ROWID;

-- The ledger's first verifier key, kept here as well as in config/, so that a ledger
-- rebuilt under another key is noticed even when config/ was replaced with it.
CREATE TABLE ledger_pins (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Why a consumer takes a resource's data; recorded with every pull.
ALTER TABLE subscriptions ADD COLUMN purpose TEXT;
