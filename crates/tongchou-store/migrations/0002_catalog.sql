-- The resource catalog: units, resources (current form) and every version of each resource.
CREATE TABLE units (
    code       TEXT PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL UNIQUE,
    name_en    TEXT NOT NULL DEFAULT '',
    slug       TEXT NOT NULL UNIQUE,
    parent     TEXT REFERENCES units(code),
    seq        INTEGER NOT NULL UNIQUE,
    created_at TEXT NOT NULL
);

CREATE TABLE resources (
    code          TEXT PRIMARY KEY NOT NULL,
    unit          TEXT NOT NULL REFERENCES units(code),
    name          TEXT NOT NULL,
    share_type    TEXT NOT NULL,
    open_type     TEXT NOT NULL,
    update_cycle  TEXT NOT NULL,
    field_count   INTEGER NOT NULL,
    version       INTEGER NOT NULL,
    body          TEXT NOT NULL,
    registered_at TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    has_data      INTEGER NOT NULL DEFAULT 0,
    UNIQUE (unit, name)
);
CREATE INDEX resources_by_unit ON resources(unit);

CREATE TABLE resource_versions (
    code       TEXT NOT NULL REFERENCES resources(code),
    version    INTEGER NOT NULL,
    body       TEXT NOT NULL,
    changed_at TEXT NOT NULL,
    changed_by TEXT NOT NULL,
    summary    TEXT NOT NULL,
    PRIMARY KEY (code, version)
);

-- The next 顺序码 of generated resource codes.
CREATE TABLE catalog_sequence (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    next INTEGER NOT NULL
);
INSERT INTO catalog_sequence (id, next) VALUES (1, 1);

-- Bumped by every catalog change; the search index records the generation it reflects.
INSERT INTO instance (key, value) VALUES ('catalog_generation', '0');
