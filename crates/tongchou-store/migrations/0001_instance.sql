-- The instance's own facts; later migrations add the catalog, access and exchange tables.
CREATE TABLE instance (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
