-- The whole gbdfl database schema. Embedded in the binary (include_str!) and
-- applied by `gbdfl init`; PRAGMA user_version records the version it brings
-- the database to, and src/store/sqlite.rs migrates older databases on open.
--
-- Nothing personal is stored in plaintext: the IIN is found by a keyed blind
-- index (`subject`) and kept only sealed (`iin_enc`); everything else that could identify the subject in
-- `*_enc` columns sealed with AES-256-GCM (docs/FORMAT.md). Plaintext columns
-- hold only times, the operator and host, and enumerated status values.

-- Facts about the database itself: 'format' = 'gbdfl', 'created_at'.
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

-- One row per master key that has sealed rows here. The highest version is
-- the current key; `check_value` tells a wrong key file apart before anything
-- is read or written.
CREATE TABLE IF NOT EXISTS keys (
    version      INTEGER PRIMARY KEY,
    check_value  BLOB NOT NULL,            -- HKDF-SHA-256(master, info "gbdfl/v1/key-check"), 32 bytes
    wrapped_keys BLOB NOT NULL,            -- index key || audit key, sealed under this version's record key
    created_at   TEXT NOT NULL,
    retired_at   TEXT                      -- set when `rekey` replaced this key
) STRICT;

-- Every lookup attempt: a paid call (whatever came back) or an answer from
-- the cache. `id` is made by the client (UUIDv7; for `gbdfl import` a
-- UUIDv8 derived from the answer, docs/FORMAT.md), so retries, re-imports
-- and merges of several offices' databases never duplicate a lookup.
CREATE TABLE IF NOT EXISTS lookups (
    id           TEXT PRIMARY KEY,         -- UUIDv7 (or v8 when imported), lowercase hyphenated
    subject      BLOB NOT NULL,            -- HMAC-SHA-256(index subkey, IIN), 32 bytes
    requested_at TEXT NOT NULL,            -- UTC, RFC 3339 with milliseconds and Z
    answered_at  TEXT,                     -- when the answer (or failure) came back
    operator     TEXT NOT NULL,            -- who asked (the staff member, not the subject)
    host         TEXT NOT NULL,            -- which machine asked
    source       TEXT NOT NULL CHECK (source IN ('service', 'cache')),
    outcome      TEXT NOT NULL CHECK (outcome IN ('answered', 'garbled', 'refused', 'unavailable', 'cached')),
    status       TEXT,                     -- GBDFL status (VALID, PENDING, ...) when the answer had one
    result       INTEGER,                  -- the answer's `result` flag, 0 or 1
    http_status  INTEGER,                  -- HTTP status of the answer, NULL when none came
    failure_type TEXT,                     -- failure_reason.type (CLIENT, SERVICE_ERROR)
    iin_checked  INTEGER NOT NULL,         -- 0 when --skip-iin-check let a failing IIN through
    cached_from  TEXT REFERENCES lookups (id) ON DELETE SET NULL, -- the lookup a cache answer came from
    key_version  INTEGER NOT NULL REFERENCES keys (version),
    iin_enc      BLOB NOT NULL,            -- sealed IIN (for reports, rekey and export; found by `subject`)
    session_enc  BLOB NOT NULL,            -- sealed face2face backend session id
    purpose_enc  BLOB,                     -- sealed purpose given by the operator
    detail_enc   BLOB,                     -- sealed failure detail, HTTP error message or transport error
    response_enc BLOB,                     -- sealed codec byte + the response body (raw or zstd, docs/FORMAT.md)
    summary_enc  BLOB,                     -- sealed document summary of a VALID answer (version 3; NULL before)
    reached      TEXT CHECK (reached IN ('no', 'maybe', 'yes')), -- did the request reach the service (version 4; NULL for cache answers and before)
    os_user      TEXT                      -- OS user of the recording process, `NAME (uid N)` (version 5; NULL before)
) STRICT;

CREATE INDEX IF NOT EXISTS lookups_by_subject ON lookups (subject, requested_at);
CREATE INDEX IF NOT EXISTS lookups_by_time ON lookups (requested_at);
-- The cache answers that name a lookup as their source: deleting a lookup
-- (purge) sets their `cached_from` to NULL, and without this index each
-- delete read the whole table. Databases made before it get it when next
-- opened.
CREATE INDEX IF NOT EXISTS lookups_by_cached_from ON lookups (cached_from)
    WHERE cached_from IS NOT NULL;
-- The latest VALID answer of each subject, for reports that walk every
-- person. It covers the sealed summary (schema version 3), so the expiry
-- scan reads this index alone, in subject order, and never the table.
CREATE INDEX IF NOT EXISTS lookups_latest ON lookups (subject, answered_at, id, key_version, summary_enc)
    WHERE source = 'service' AND outcome = 'answered' AND status = 'VALID';

-- The audit trail: who did what with personal data, when and why. Entries
-- are appended in the same transaction as their effect and chained: `mac`
-- is HMAC-SHA-256 under the audit key over the previous entry's mac and this
-- entry's fields (docs/FORMAT.md), so a changed, deleted, inserted or
-- reordered entry breaks the chain. No personal data in plaintext: the
-- subject only as its blind index, purpose and error sealed.
CREATE TABLE IF NOT EXISTS audit (
    seq         INTEGER PRIMARY KEY,       -- 1, 2, 3, ... without gaps
    id          TEXT NOT NULL UNIQUE,      -- UUIDv7, made by the client
    at          TEXT NOT NULL,             -- UTC, RFC 3339 with milliseconds and Z
    operator    TEXT NOT NULL,
    host        TEXT NOT NULL,
    command     TEXT NOT NULL,             -- fetch, show, history, report, purge, ...
    subject     BLOB,                      -- blind index of the IIN concerned, if one
    outcome     TEXT NOT NULL CHECK (outcome IN ('ok', 'error')),
    exit_code   INTEGER NOT NULL,
    paid_call   INTEGER NOT NULL,          -- 1 when a call to the paid service was made
    records     INTEGER NOT NULL,          -- records shown, exported, changed or deleted
    key_version INTEGER NOT NULL REFERENCES keys (version),
    purpose_enc BLOB,                      -- sealed purpose
    error_enc   BLOB,                      -- sealed error message
    mac         BLOB NOT NULL,             -- 32 bytes
    os_user     TEXT                       -- OS user that ran the command, `NAME (uid N)`; in the mac when present (version 5; NULL before)
) STRICT;

-- Requests waiting to be sent (schema version 2): `fetch` and `batch` put a
-- request here when the service cannot be reached or answers PENDING, and
-- `sync` sends it. One row per IIN and session (`request` is unique), so a
-- request is never queued twice. A process takes an item by setting
-- `claimed_by`/`claimed_until` in a committed transaction before it sends;
-- the answer's lookup is inserted and the item deleted (or rescheduled) in
-- one transaction. An item whose claim ran out while claimed was being sent
-- when its process died: it is *in doubt* (the service may have answered
-- and billed it) and is sent again only when an operator says so.
CREATE TABLE IF NOT EXISTS queue (
    id            TEXT PRIMARY KEY,        -- UUIDv7, made by the client
    subject       BLOB NOT NULL,           -- blind index of the IIN, as in lookups
    request       BLOB NOT NULL UNIQUE,    -- HMAC-SHA-256(index subkey, "queue" IIN session), 32 bytes
    queued_at     TEXT NOT NULL,           -- UTC, RFC 3339 with milliseconds and Z
    deadline      TEXT NOT NULL,           -- never sent after this (the 3-hour window)
    state         TEXT NOT NULL CHECK (state IN ('waiting', 'expired')),
    attempts      INTEGER NOT NULL DEFAULT 0,  -- calls started for this item
    next_try_at   TEXT NOT NULL,           -- not sent before this (backoff, Retry-After)
    claimed_by    TEXT,                    -- the process sending it now: PID-RANDOM-WORKER
    claimed_until TEXT,                    -- the claim's end; past it, the item is in doubt
    last_status   TEXT,                    -- last GBDFL status or HTTP status, enumerated
    operator      TEXT NOT NULL,           -- who asked
    host          TEXT NOT NULL,
    iin_checked   INTEGER NOT NULL,
    key_version   INTEGER NOT NULL REFERENCES keys (version),
    iin_enc       BLOB NOT NULL,           -- sealed IIN
    session_enc   BLOB NOT NULL,           -- sealed face2face backend session id
    purpose_enc   BLOB,                    -- sealed purpose
    error_enc     BLOB                     -- sealed last error message
) STRICT;

CREATE INDEX IF NOT EXISTS queue_by_deadline ON queue (state, deadline);
