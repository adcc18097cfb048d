-- Loads into resources' tables, and the rows they kept out (quarantine).
CREATE TABLE loads (
    id          TEXT PRIMARY KEY NOT NULL,
    resource    TEXT NOT NULL REFERENCES resources(code),
    file        TEXT NOT NULL,
    mode        TEXT NOT NULL,
    actor       TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    version     INTEGER NOT NULL,
    rows_read   INTEGER NOT NULL,
    accepted    INTEGER NOT NULL,
    quarantined INTEGER NOT NULL,
    by_rule     TEXT NOT NULL,
    rows_total  INTEGER NOT NULL
);
CREATE INDEX loads_by_resource ON loads(resource, version);

CREATE TABLE quarantine (
    id         INTEGER PRIMARY KEY,
    resource   TEXT NOT NULL REFERENCES resources(code),
    load_id    TEXT NOT NULL REFERENCES loads(id),
    line       INTEGER NOT NULL,
    violations TEXT NOT NULL,
    row_values TEXT NOT NULL,
    status     TEXT NOT NULL DEFAULT 'open'
);
CREATE INDEX quarantine_by_resource ON quarantine(resource, status);
