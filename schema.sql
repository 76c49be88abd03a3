-- The whole gbdfl database schema, at-rest format version 7. Embedded in the
-- binary (include_str!) and applied by `gbdfl init`; PRAGMA user_version
-- records the version, and gbdfl migrates databases of versions 2 to 6 when
-- it opens them (docs/FORMAT.md says what each version held).
--
-- Nothing personal is stored in plaintext: the IIN is found by a keyed blind
-- index (`subject`) and kept only sealed (`iin_enc`); everything else that
-- could identify the subject in `*_enc` columns sealed with AES-256-GCM,
-- whose associated data also binds the plaintext columns that choose and
-- order records (docs/FORMAT.md). Plaintext columns hold only times, the
-- operator and host, and enumerated values. Times are INTEGER milliseconds
-- since 1970-01-01T00:00:00Z (UTC).

-- Facts about the database itself: 'format' = 'gbdfl', 'created_at' (RFC 3339
-- text), 'format6_since' (ms, when an older database became version 6).
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
    created_at   INTEGER NOT NULL,
    retired_at   INTEGER                   -- set when `rekey` replaced this key
) STRICT;

-- Every compression dictionary a stored answer may name (codec 0x01 and
-- 0x02 of `response_enc`), so that the database, the key file and
-- docs/FORMAT.md are all a reader needs. `sha256` is the SHA-256 of
-- `content`; docs/FORMAT.md lists each one, and `gbdfl check` compares.
CREATE TABLE IF NOT EXISTS dictionaries (
    codec   INTEGER PRIMARY KEY CHECK (codec BETWEEN 1 AND 255),
    zstd_id INTEGER NOT NULL,              -- the id zstd frames record (0: raw content, no id)
    sha256  BLOB NOT NULL CHECK (length(sha256) = 32),
    content BLOB NOT NULL                  -- the dictionary, byte for byte
) STRICT;

-- Every lookup attempt: a paid call (whatever came back), an answer from
-- the cache, or a VALID answer another branch of the organisation fetched
-- (source 'org', the organisation cache). `id` is made by the client (UUIDv7; for `gbdfl import` a
-- UUIDv8 derived from the answer, docs/FORMAT.md), so retries, re-imports
-- and merges of several offices' databases never duplicate a lookup.
CREATE TABLE IF NOT EXISTS lookups (
    id           TEXT PRIMARY KEY,         -- UUIDv7 (or v8 when imported), lowercase hyphenated
    subject      BLOB NOT NULL CHECK (length(subject) = 32), -- HMAC-SHA-256(index subkey, IIN)
    requested_at INTEGER NOT NULL,         -- ms since the epoch, UTC
    answered_at  INTEGER,                  -- when the answer (or failure) came back
    operator     TEXT NOT NULL,            -- who asked (the staff member, not the subject)
    host         TEXT NOT NULL,            -- which machine asked
    source       TEXT NOT NULL CHECK (source IN ('service', 'cache', 'org')),
    outcome      TEXT NOT NULL CHECK (outcome IN ('answered', 'garbled', 'refused', 'unavailable', 'cached')),
    status       TEXT CHECK (status IN ('UNAPPROVED', 'PENDING', 'VALID', 'INVALID', 'TIMEOUT',
                                        'NOT_FOUND', 'FAILED', 'ERROR_ACCEPTED', 'OTHER')),
    result       INTEGER CHECK (result IN (0, 1)), -- the answer's `result` flag
    http_status  INTEGER CHECK (http_status BETWEEN 100 AND 999), -- NULL when no HTTP answer came
    failure_type TEXT CHECK (failure_type NOT GLOB '*[^A-Z0-9_]*' AND length(failure_type) BETWEEN 1 AND 40),
    iin_checked  INTEGER NOT NULL CHECK (iin_checked IN (0, 1)), -- 0 when --skip-iin-check let a failing IIN through
    cached_from  TEXT,                     -- the lookup a cache or org answer came from (kept when that one is purged)
    key_version  INTEGER NOT NULL REFERENCES keys (version),
    iin_enc      BLOB NOT NULL,            -- sealed IIN (for reports, rekey and export; found by `subject`)
    session_enc  BLOB NOT NULL,            -- sealed face2face backend session id
    purpose_enc  BLOB,                     -- sealed purpose given by the operator
    detail_enc   BLOB,                     -- sealed failure detail, HTTP error message or transport error
    response_enc BLOB,                     -- sealed codec byte + the response body (raw or zstd, docs/FORMAT.md)
    summary_enc  BLOB,                     -- sealed document summary of a VALID answer
    reached      TEXT CHECK (reached IN ('no', 'maybe', 'yes')), -- did the request reach the service; NULL for cache answers
    os_user      TEXT                      -- OS user of the recording process, `NAME (uid N)`
) STRICT;

CREATE INDEX IF NOT EXISTS lookups_by_subject ON lookups (subject, requested_at);
CREATE INDEX IF NOT EXISTS lookups_by_time ON lookups (requested_at);
-- The VALID answers of each subject (of the service or of the organisation
-- cache), for reports that walk every person (docs/FORMAT.md: "VALID" means
-- exactly this condition). It covers the sealed summary and every field its
-- associated data binds, so the expiry scan reads this index alone, in
-- subject order, and never the table.
CREATE INDEX IF NOT EXISTS lookups_latest
    ON lookups (subject, answered_at, id, key_version, requested_at, summary_enc,
                source, reached, cached_from)
    WHERE source IN ('service', 'org') AND outcome = 'answered' AND status = 'VALID';
-- Every other lookup, with what its `iin_enc` is bound to: the expiry scan
-- verifies these too, so that a VALID answer whose status, source or
-- outcome was altered cannot leave an older answer looking like the latest.
CREATE INDEX IF NOT EXISTS lookups_other
    ON lookups (subject, answered_at, id, key_version, requested_at, source, outcome, status,
                reached, cached_from, iin_enc)
    WHERE source NOT IN ('service', 'org') OR outcome IS NOT 'answered' OR status IS NOT 'VALID';

-- The audit trail: who did what with personal data, when and why. Entries
-- are appended in the same transaction as their effect and chained: `mac`
-- is HMAC-SHA-256 under the audit key over the previous entry's mac and this
-- entry's fields (docs/FORMAT.md), so a changed, deleted, inserted or
-- reordered entry breaks the chain. No personal data in plaintext: the
-- subject only as its blind index, purpose and error sealed.
CREATE TABLE IF NOT EXISTS audit (
    seq         INTEGER PRIMARY KEY,       -- 1, 2, 3, ... without gaps
    id          TEXT NOT NULL UNIQUE,      -- UUIDv7, made by the client
    at          INTEGER NOT NULL,          -- ms since the epoch, UTC
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
    os_user     TEXT,                      -- OS user that ran the command, `NAME (uid N)`; in the mac when present (NULL before version 5)
    lookup_id   TEXT,                      -- the lookup this entry wrote or showed, if one; in the mac (NULL before version 6)
    purged_before INTEGER                  -- a purge's cutoff (ms): it deleted lookups requested before it; in the mac
) STRICT;

CREATE INDEX IF NOT EXISTS audit_by_lookup ON audit (lookup_id) WHERE lookup_id IS NOT NULL;

-- Requests waiting to be sent: `fetch` and `batch` put a
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
    request       BLOB NOT NULL UNIQUE CHECK (length(request) = 32),    -- HMAC-SHA-256(index subkey, "queue" IIN session), 32 bytes
    queued_at     INTEGER NOT NULL,        -- ms since the epoch, UTC
    deadline      INTEGER NOT NULL,           -- never sent after this (the 3-hour window)
    state         TEXT NOT NULL CHECK (state IN ('waiting', 'expired')),
    attempts      INTEGER NOT NULL DEFAULT 0,  -- calls started for this item
    next_try_at   INTEGER NOT NULL,           -- not sent before this (backoff, Retry-After)
    claimed_by    TEXT,                    -- the process sending it now: PID HOST RUN WORKER
    claimed_until INTEGER,                 -- the claim's end; past it, the item is in doubt
    last_status   TEXT,                    -- last GBDFL status or HTTP status, enumerated
    operator      TEXT NOT NULL,           -- who asked
    host          TEXT NOT NULL,
    iin_checked   INTEGER NOT NULL CHECK (iin_checked IN (0, 1)),
    key_version   INTEGER NOT NULL REFERENCES keys (version),
    iin_enc       BLOB NOT NULL,           -- sealed IIN
    session_enc   BLOB NOT NULL,           -- sealed face2face backend session id
    purpose_enc   BLOB,                    -- sealed purpose
    error_enc     BLOB                     -- sealed last error message
) STRICT;

CREATE INDEX IF NOT EXISTS queue_by_deadline ON queue (state, deadline);

-- Not made here: the optional table `push_pending` (the lookups a branch
-- has not yet pushed to the organisation's replica) and its two triggers
-- on `lookups`, made when pushing is first enabled (docs/FORMAT.md).
