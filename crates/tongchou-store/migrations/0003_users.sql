-- User accounts of units, with roles; passwords only as Argon2id hashes.
CREATE TABLE users (
    name          TEXT PRIMARY KEY NOT NULL,
    unit          TEXT NOT NULL REFERENCES units(code),
    role          TEXT NOT NULL,
    level         INTEGER,
    password_hash TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    disabled      INTEGER NOT NULL DEFAULT 0
);
