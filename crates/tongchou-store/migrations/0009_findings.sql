-- What inspectors report from the field (the inspector page): a licence number checked
-- against the register, with the verdict the platform gave and the inspector's note.
CREATE TABLE findings (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    licence_no   TEXT NOT NULL,
    verdict      TEXT NOT NULL,
    shop_name    TEXT NOT NULL DEFAULT '',
    shop_address TEXT NOT NULL DEFAULT '',
    note         TEXT NOT NULL DEFAULT '',
    reported_by  TEXT NOT NULL,
    unit         TEXT NOT NULL,
    reported_at  TEXT NOT NULL
);
CREATE INDEX findings_by_reporter ON findings (reported_by, id);
