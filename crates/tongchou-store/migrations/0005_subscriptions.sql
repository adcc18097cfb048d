-- Consumers' subscriptions to resources, with their cursors, and the exchange volume.
CREATE TABLE subscriptions (
    id          INTEGER PRIMARY KEY,
    resource    TEXT NOT NULL REFERENCES resources(code),
    consumer    TEXT NOT NULL REFERENCES units(code),
    cursor      INTEGER NOT NULL,
    created_at  TEXT NOT NULL,
    UNIQUE (resource, consumer)
);

CREATE TABLE exchange_volume (
    day       TEXT NOT NULL,
    resource  TEXT NOT NULL,
    provider  TEXT NOT NULL,
    consumer  TEXT NOT NULL,
    records   INTEGER NOT NULL,
    PRIMARY KEY (day, resource, consumer)
);
