-- A load is recorded as pending, with its quarantine, before its table commit, and marked
-- committed after; a pending load found later is settled from the table's commit history.
ALTER TABLE loads ADD COLUMN status TEXT NOT NULL DEFAULT 'committed';
