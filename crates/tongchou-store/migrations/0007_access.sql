-- Identity and access: credentials, sign-in failures, purposes, per-resource policy,
-- access requests, grants, the working calendar and the record of every decision.

-- Browser sessions and API tokens. Only a SHA-256 of the secret part is kept.
CREATE TABLE credentials (
    id          TEXT PRIMARY KEY NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('session', 'token')),
    secret_hash BLOB NOT NULL,
    user        TEXT NOT NULL REFERENCES users(name),
    label       TEXT NOT NULL DEFAULT '',
    scopes      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    expires_at  TEXT,
    revoked_at  TEXT
);
CREATE INDEX credentials_by_user ON credentials(user);

CREATE TABLE sign_in_failures (
    user    TEXT NOT NULL,
    address TEXT NOT NULL,
    at      INTEGER NOT NULL
);
CREATE INDEX sign_in_failures_by_user ON sign_in_failures(user, at);
CREATE INDEX sign_in_failures_by_address ON sign_in_failures(address, at);

-- The purposes a request may name, maintained by the bureau.
CREATE TABLE purposes (
    code     TEXT PRIMARY KEY NOT NULL,
    label    TEXT NOT NULL,
    label_en TEXT NOT NULL,
    active   INTEGER NOT NULL DEFAULT 1
);
INSERT INTO purposes (code, label, label_en) VALUES
    ('subsidy_review', '补贴资格审核', 'Subsidy eligibility review'),
    ('discipline_supervision', '纪检监督', 'Discipline inspection and supervision'),
    ('tax_administration', '税收征管', 'Tax administration'),
    ('procuratorial_supervision', '检察监督', 'Procuratorial supervision'),
    ('urban_planning', '规划编制', 'Urban and market planning'),
    ('market_inspection', '市场巡查', 'Market inspection'),
    ('identity_verification', '身份核验', 'Identity and relationship verification'),
    ('decision_support', '决策分析', 'Decision support for leaders'),
    ('public_service', '政务服务办理', 'Handling a public service application'),
    ('statistics', '统计分析', 'Statistical analysis');

-- What a providing unit's steward sets beyond the catalog's share type.
CREATE TABLE resource_policies (
    resource         TEXT PRIMARY KEY NOT NULL REFERENCES resources(code),
    min_leader_level INTEGER,
    updated_by       TEXT NOT NULL,
    updated_at       TEXT NOT NULL
);

CREATE TABLE access_requests (
    id             INTEGER PRIMARY KEY,
    requester      TEXT NOT NULL REFERENCES users(name),
    unit           TEXT NOT NULL REFERENCES units(code),
    resource       TEXT NOT NULL REFERENCES resources(code),
    provider       TEXT NOT NULL REFERENCES units(code),
    fields         TEXT NOT NULL,
    purpose        TEXT NOT NULL REFERENCES purposes(code),
    purpose_detail TEXT NOT NULL DEFAULT '',
    legal_basis    TEXT NOT NULL DEFAULT '',
    period_from    TEXT NOT NULL,
    period_until   TEXT,
    filed_at       TEXT NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'refused', 'withdrawn')),
    decided_by     TEXT,
    decided_at     TEXT,
    reason         TEXT
);
CREATE INDEX access_requests_by_provider ON access_requests(provider, state);
CREATE INDEX access_requests_by_requester ON access_requests(requester);

-- What the query engine enforces: who, for what purpose, which fields with which masks,
-- which rows, and when.
CREATE TABLE grants (
    id            INTEGER PRIMARY KEY,
    request       INTEGER REFERENCES access_requests(id),
    resource      TEXT NOT NULL REFERENCES resources(code),
    provider      TEXT NOT NULL REFERENCES units(code),
    unit          TEXT NOT NULL REFERENCES units(code),
    user          TEXT REFERENCES users(name),
    role          TEXT,
    purpose       TEXT NOT NULL REFERENCES purposes(code),
    fields        TEXT NOT NULL,
    row_filter    TEXT,
    valid_from    TEXT NOT NULL,
    valid_until   TEXT,
    granted_by    TEXT NOT NULL,
    granted_at    TEXT NOT NULL,
    revoked_by    TEXT,
    revoked_at    TEXT,
    revoke_reason TEXT
);
CREATE INDEX grants_by_unit ON grants(unit);
CREATE INDEX grants_by_resource ON grants(resource);

-- Days that break the Monday–Friday rule: public holidays and make-up working days (调休).
CREATE TABLE calendar (
    day  TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('holiday', 'workday'))
);

-- Every sign-in, request, decision, grant change and revocation, in order; the audit
-- ledger takes these over.
CREATE TABLE access_events (
    id     INTEGER PRIMARY KEY,
    at     TEXT NOT NULL,
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL
);
