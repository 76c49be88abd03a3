-- The gbdfl central store on PostgreSQL (15 or newer), schema version 1.
-- Embedded in the binary and applied by `gbdfl central init`; every
-- connection reads gbdfl_meta's 'schema' and refuses any other version.
-- docs/CENTRAL.md says how to run it.
--
-- It holds exactly what branches hold: sealed values, blind indexes,
-- statuses, times, and the branch each row came from. The server never
-- receives a key: a database administrator with full access learns nothing
-- that a stolen branch database would not tell.
--
-- Every unique key contains `branch`, the distribution column: on Citus,
-- `SELECT create_distributed_table('gbdfl_lookups', 'branch')` (and the
-- same for gbdfl_audit, colocated) runs this schema unchanged; the small
-- tables are reference tables. Text that orders rows is COLLATE "C", so
-- that it orders byte by byte, as SQLite does.

CREATE TABLE IF NOT EXISTS gbdfl_meta (
    key   text COLLATE "C" PRIMARY KEY,
    value text NOT NULL
);

-- The organisation's keys, as branches hold them: the key check value
-- (HKDF of the master key) and the blind-index and audit keys sealed under
-- the master key. A branch whose key file gives another check value is
-- refused before it writes anything.
CREATE TABLE IF NOT EXISTS gbdfl_org_keys (
    version      bigint PRIMARY KEY,
    check_value  bytea NOT NULL CHECK (length(check_value) = 32),
    wrapped_keys bytea NOT NULL,
    created_at   bigint NOT NULL
);

-- One row per branch: its id, the PostgreSQL role it logs in as, and the
-- key check value it joined with.
CREATE TABLE IF NOT EXISTS gbdfl_branches (
    branch        text COLLATE "C" PRIMARY KEY CHECK (branch ~ '^[a-z0-9][a-z0-9_-]{0,39}$'),
    role          name NOT NULL UNIQUE,
    key_check     bytea NOT NULL CHECK (length(key_check) = 32),
    registered_at bigint NOT NULL
);

-- Every branch's lookups, column for column as in the branch's `lookups`
-- table (schema.sql), sealed values as they were sealed there.
CREATE TABLE IF NOT EXISTS gbdfl_lookups (
    branch       text COLLATE "C" NOT NULL CHECK (branch ~ '^[a-z0-9][a-z0-9_-]{0,39}$'),
    id           text COLLATE "C" NOT NULL,
    subject      bytea NOT NULL CHECK (length(subject) = 32),
    requested_at bigint NOT NULL,
    answered_at  bigint,
    operator     text NOT NULL,
    host         text NOT NULL,
    source       text NOT NULL CHECK (source IN ('service', 'cache', 'org')),
    outcome      text NOT NULL CHECK (outcome IN ('answered', 'garbled', 'refused', 'unavailable', 'cached')),
    status       text CHECK (status IN ('UNAPPROVED', 'PENDING', 'VALID', 'INVALID', 'TIMEOUT',
                                        'NOT_FOUND', 'FAILED', 'ERROR_ACCEPTED', 'OTHER')),
    result       boolean,
    http_status  integer CHECK (http_status BETWEEN 100 AND 999),
    failure_type text,
    iin_checked  boolean NOT NULL,
    cached_from  text COLLATE "C",
    key_version  bigint NOT NULL,
    iin_enc      bytea NOT NULL,
    session_enc  bytea NOT NULL,
    purpose_enc  bytea,
    detail_enc   bytea,
    response_enc bytea,
    summary_enc  bytea,
    reached      text CHECK (reached IN ('no', 'maybe', 'yes')),
    os_user      text,
    PRIMARY KEY (branch, id)
);

-- The organisation cache: a person's VALID answers, newest first.
CREATE INDEX IF NOT EXISTS gbdfl_lookups_valid ON gbdfl_lookups (subject, answered_at)
    WHERE source IN ('service', 'org') AND outcome = 'answered' AND status = 'VALID';
-- Head office's expiry scan, one branch at a time, in the branch's own order.
CREATE INDEX IF NOT EXISTS gbdfl_lookups_latest
    ON gbdfl_lookups (branch, subject, answered_at, id)
    INCLUDE (key_version, requested_at, source, reached, cached_from)
    WHERE source IN ('service', 'org') AND outcome = 'answered' AND status = 'VALID';

-- Every branch's audit trail, entry for entry, its chain unbroken.
CREATE TABLE IF NOT EXISTS gbdfl_audit (
    branch        text COLLATE "C" NOT NULL CHECK (branch ~ '^[a-z0-9][a-z0-9_-]{0,39}$'),
    seq           bigint NOT NULL CHECK (seq > 0),
    id            text COLLATE "C" NOT NULL,
    at            text NOT NULL,
    operator      text NOT NULL,
    host          text NOT NULL,
    command       text NOT NULL,
    subject       bytea,
    outcome       text NOT NULL,
    exit_code     bigint NOT NULL,
    paid_call     boolean NOT NULL,
    records       bigint NOT NULL,
    key_version   bigint NOT NULL,
    purpose_enc   bytea,
    error_enc     bytea,
    mac           bytea NOT NULL,
    os_user       text,
    lookup_id     text,
    purged_before bigint,
    PRIMARY KEY (branch, seq)
);

-- Retention purges done at the centre, by head office only.
CREATE TABLE IF NOT EXISTS gbdfl_purges (
    at        bigint NOT NULL,
    by_role   name NOT NULL DEFAULT session_user,
    operator  text NOT NULL,
    before    bigint NOT NULL,
    lookups   bigint NOT NULL,
    PRIMARY KEY (at, by_role)
);

-- Access: branches log in as their own role, a member of gbdfl_branch;
-- head office as a member of gbdfl_head_office. Row-level security lets a
-- branch insert only rows of its own id, read its own rows and the VALID
-- answers the organisation cache needs (never another branch's failed
-- lookups or audit trail), and never update or delete. The two group roles
-- belong to the whole PostgreSQL server: keep one gbdfl database per server
-- (docs/CENTRAL.md).
DO $$ BEGIN
    CREATE ROLE gbdfl_branch NOLOGIN;
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN
    CREATE ROLE gbdfl_head_office NOLOGIN;
EXCEPTION WHEN duplicate_object THEN NULL; END $$;

CREATE OR REPLACE FUNCTION gbdfl_my_branch() RETURNS text
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$ SELECT branch FROM public.gbdfl_branches WHERE role = session_user $$;
REVOKE ALL ON FUNCTION gbdfl_my_branch() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION gbdfl_my_branch() TO gbdfl_branch, gbdfl_head_office;

ALTER TABLE gbdfl_lookups ENABLE ROW LEVEL SECURITY;
ALTER TABLE gbdfl_audit ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS branch_reads ON gbdfl_lookups;
CREATE POLICY branch_reads ON gbdfl_lookups FOR SELECT TO gbdfl_branch
    USING (branch = gbdfl_my_branch()
           OR (source IN ('service', 'org') AND outcome = 'answered' AND status = 'VALID'));
DROP POLICY IF EXISTS branch_adds_its_own ON gbdfl_lookups;
CREATE POLICY branch_adds_its_own ON gbdfl_lookups FOR INSERT TO gbdfl_branch
    WITH CHECK (branch = gbdfl_my_branch());
DROP POLICY IF EXISTS head_office_reads ON gbdfl_lookups;
CREATE POLICY head_office_reads ON gbdfl_lookups FOR SELECT TO gbdfl_head_office USING (true);
DROP POLICY IF EXISTS head_office_purges ON gbdfl_lookups;
CREATE POLICY head_office_purges ON gbdfl_lookups FOR DELETE TO gbdfl_head_office USING (true);
DROP POLICY IF EXISTS branch_reads_its_own ON gbdfl_audit;
CREATE POLICY branch_reads_its_own ON gbdfl_audit FOR SELECT TO gbdfl_branch
    USING (branch = gbdfl_my_branch());
DROP POLICY IF EXISTS branch_adds_its_own ON gbdfl_audit;
CREATE POLICY branch_adds_its_own ON gbdfl_audit FOR INSERT TO gbdfl_branch
    WITH CHECK (branch = gbdfl_my_branch());
DROP POLICY IF EXISTS head_office_reads ON gbdfl_audit;
CREATE POLICY head_office_reads ON gbdfl_audit FOR SELECT TO gbdfl_head_office USING (true);

REVOKE ALL ON gbdfl_meta, gbdfl_org_keys, gbdfl_branches, gbdfl_lookups, gbdfl_audit, gbdfl_purges FROM PUBLIC;
GRANT SELECT ON gbdfl_meta, gbdfl_org_keys, gbdfl_branches TO gbdfl_branch, gbdfl_head_office;
GRANT SELECT, INSERT ON gbdfl_lookups, gbdfl_audit TO gbdfl_branch;
GRANT SELECT, DELETE ON gbdfl_lookups TO gbdfl_head_office;
GRANT SELECT ON gbdfl_audit, gbdfl_purges TO gbdfl_head_office;
GRANT INSERT ON gbdfl_purges TO gbdfl_head_office;

INSERT INTO gbdfl_meta (key, value) VALUES ('schema', '1'), ('format', 'gbdfl-central')
    ON CONFLICT (key) DO NOTHING;
