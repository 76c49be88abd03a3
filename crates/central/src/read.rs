//! Reading the central store: the organisation cache, `pull`, head-office
//! reports and the audit of every branch. Rows come back as the branches
//! wrote them; the caller opens them with the organisation's key.

use postgres::fallible_iterator::FallibleIterator;
use postgres::types::ToSql;

use gbdfl_store::{AuditRow, LatestRow, LookupRow, Outcome, Reached, Source, StoreError};

use crate::{Central, CentralError, statement_error};

/// The columns of a lookup, as `LookupRow` holds them.
const LOOKUP_COLUMNS: &str = "id, subject, requested_at, answered_at, operator, host, source, \
     outcome, status, result, http_status, failure_type, iin_checked, cached_from, key_version, \
     iin_enc, session_enc, purpose_enc, detail_enc, response_enc, summary_enc, reached, os_user";

/// Where VALID answers are: the predicate of the partial indexes.
const VALID: &str = "source IN ('service', 'org') AND outcome = 'answered' AND status = 'VALID'";

/// What the central store holds of one branch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BranchCounts {
    /// The branch's id.
    pub branch: String,
    /// Its lookups.
    pub lookups: u64,
    /// Its audit entries.
    pub audit: u64,
}

/// The last audit entry of a branch the central store holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BranchHead {
    /// Its number.
    pub seq: i64,
    /// Its MAC.
    pub mac: Vec<u8>,
}

/// A value of the format the central store holds otherwise: refused, as
/// the branch refuses one in its own database.
fn not_of_the_format(id: &str, column: &'static str, value: &str) -> StoreError {
    StoreError::Corrupt {
        id: id.to_owned(),
        column,
        reason: format!("the central store holds {value:?}, not a value of the format"),
    }
}

fn parse_source(id: &str, text: &str) -> Result<Source, StoreError> {
    Source::parse(text).ok_or_else(|| not_of_the_format(id, "source", text))
}

fn parse_outcome(id: &str, text: &str) -> Result<Outcome, StoreError> {
    Outcome::parse(text).ok_or_else(|| not_of_the_format(id, "outcome", text))
}

fn parse_reached(id: &str, text: Option<&str>) -> Result<Option<Reached>, StoreError> {
    text.map(|t| Reached::parse(t).ok_or_else(|| not_of_the_format(id, "reached", t)))
        .transpose()
}

fn lookup_row(r: &postgres::Row) -> Result<LookupRow, StoreError> {
    let id: &str = r.get(0);
    let source = parse_source(id, r.get(6))?;
    let outcome = parse_outcome(id, r.get(7))?;
    let reached = parse_reached(id, r.get(21))?;
    Ok(LookupRow {
        id: r.get(0),
        subject: r.get(1),
        requested_at: r.get(2),
        answered_at: r.get(3),
        operator: r.get(4),
        host: r.get(5),
        source,
        outcome,
        status: r.get(8),
        result: r.get(9),
        http_status: r.get::<_, Option<i32>>(10).map(i64::from),
        failure_type: r.get(11),
        iin_checked: r.get(12),
        cached_from: r.get(13),
        key_version: r.get(14),
        iin_enc: r.get(15),
        session_enc: r.get(16),
        purpose_enc: r.get(17),
        detail_enc: r.get(18),
        response_enc: r.get(19),
        summary_enc: r.get(20),
        reached,
        os_user: r.get(22),
    })
}

fn audit_row(r: &postgres::Row) -> AuditRow {
    AuditRow {
        seq: r.get(0),
        id: r.get(1),
        at: r.get(2),
        operator: r.get(3),
        host: r.get(4),
        command: r.get(5),
        subject: r.get(6),
        outcome: r.get(7),
        exit_code: r.get(8),
        paid_call: r.get(9),
        records: r.get(10),
        key_version: r.get(11),
        purpose_enc: r.get(12),
        error_enc: r.get(13),
        mac: r.get(14),
        os_user: r.get(15),
        lookup_id: r.get(16),
        purged_before: r.get(17),
    }
}

impl Central {
    /// The newest VALID answers of `subject` (at most `limit`, newest
    /// first) answered between `since_ms` and `until_ms`, by any branch,
    /// each with the branch it came from. More than one, so that a row
    /// that does not open (altered, or of a key this branch does not hold)
    /// hides no good one behind it.
    pub fn org_records(
        &mut self,
        subject: &[u8],
        since_ms: i64,
        until_ms: i64,
        limit: i64,
    ) -> Result<Vec<(String, LookupRow)>, CentralError> {
        let at = self.at.clone();
        let rows = self
            .client
            .query(
                &format!(
                    "SELECT {LOOKUP_COLUMNS}, branch FROM gbdfl_lookups \
                     WHERE subject = $1 AND answered_at >= $2 AND answered_at <= $3 AND {VALID} \
                     ORDER BY answered_at DESC, id DESC LIMIT $4"
                ),
                &[&subject, &since_ms, &until_ms, &limit],
            )
            .map_err(|e| statement_error(&at, &e))?;
        rows.iter()
            .map(|r| Ok((r.get(23), lookup_row(r)?)))
            .collect()
    }

    /// Calls `f` with the newest VALID answer of every person answered at
    /// or after `since_ms` (of `subjects` only, when given), from any
    /// branch but `except` (`gbdfl pull`).
    pub fn each_org_latest(
        &mut self,
        subjects: Option<&[Vec<u8>]>,
        since_ms: i64,
        except: &str,
        f: &mut dyn FnMut(String, LookupRow) -> Result<(), CentralError>,
    ) -> Result<u64, CentralError> {
        let all: Vec<Vec<u8>> = Vec::new();
        let list = subjects.unwrap_or(&all);
        let any = subjects.is_none();
        let sql = format!(
            "SELECT DISTINCT ON (subject) {LOOKUP_COLUMNS}, branch FROM gbdfl_lookups \
             WHERE answered_at >= $1 AND branch <> $2 AND ($3 OR subject = ANY($4)) AND {VALID} \
             ORDER BY subject, answered_at DESC, id DESC"
        );
        self.stream(&sql, &[&since_ms, &except, &any, &list], &mut |r| {
            f(r.get(23), lookup_row(r)?)
        })
    }

    /// Runs `sql` and calls `f` with each row as it arrives (no time
    /// limit: these reads walk whole branches); returns how many rows.
    fn stream(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        f: &mut dyn FnMut(&postgres::Row) -> Result<(), CentralError>,
    ) -> Result<u64, CentralError> {
        self.unbounded()?;
        let at = self.at.clone();
        let err = |e: postgres::Error| statement_error(&at, &e);
        let mut rows = self
            .client
            .query_raw(sql, params.iter().copied())
            .map_err(err)?;
        let mut n = 0u64;
        while let Some(r) = rows.next().map_err(err)? {
            f(&r)?;
            n += 1;
        }
        Ok(n)
    }

    /// Every registered branch, in order (only registered branches can
    /// write: a push checks its registration first).
    pub fn branches(&mut self) -> Result<Vec<String>, CentralError> {
        let at = self.at.clone();
        let rows = self
            .client
            .query("SELECT branch FROM gbdfl_branches ORDER BY 1", &[])
            .map_err(|e| statement_error(&at, &e))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// How many lookups and audit entries the central store holds of `branch`.
    pub fn counts(&mut self, branch: &str) -> Result<BranchCounts, CentralError> {
        self.unbounded()?;
        let at = self.at.clone();
        let r = self
            .client
            .query_one(
                "SELECT (SELECT count(*) FROM gbdfl_lookups WHERE branch = $1), \
                        (SELECT count(*) FROM gbdfl_audit WHERE branch = $1)",
                &[&branch],
            )
            .map_err(|e| statement_error(&at, &e))?;
        Ok(BranchCounts {
            branch: branch.to_owned(),
            lookups: u64::try_from(r.get::<_, i64>(0)).unwrap_or(0),
            audit: u64::try_from(r.get::<_, i64>(1)).unwrap_or(0),
        })
    }

    /// Calls `f` with every VALID lookup of `branch` in (subject, answer
    /// time, id) order, as the branch's own expiry scan walks them.
    pub fn each_valid(
        &mut self,
        branch: &str,
        f: &mut dyn FnMut(&LatestRow<'_>) -> Result<(), StoreError>,
    ) -> Result<(), CentralError> {
        let sql = format!(
            "SELECT subject, id, key_version, requested_at, answered_at, summary_enc, source, \
             reached, cached_from FROM gbdfl_lookups WHERE branch = $1 AND {VALID} \
             ORDER BY subject, answered_at, id"
        );
        self.stream(&sql, &[&branch], &mut |r| {
            let id: &str = r.get(1);
            Ok(f(&LatestRow {
                subject: r.get(0),
                id,
                key_version: r.get(2),
                requested_at: r.get(3),
                answered_at: r.get(4),
                summary_enc: r.get(5),
                source: parse_source(id, r.get(6))?,
                reached: parse_reached(id, r.get(7))?,
                cached_from: r.get(8),
            })?)
        })?;
        Ok(())
    }

    /// Calls `f` with every lookup of `branch` that is not a VALID answer
    /// (for the check that no VALID answer was altered out of the scan).
    pub fn each_other(
        &mut self,
        branch: &str,
        f: &mut dyn FnMut(&LookupRow) -> Result<(), StoreError>,
    ) -> Result<(), CentralError> {
        let sql = format!(
            "SELECT {LOOKUP_COLUMNS} FROM gbdfl_lookups WHERE branch = $1 AND NOT ({VALID})"
        );
        self.stream(&sql, &[&branch], &mut |r| Ok(f(&lookup_row(r)?)?))?;
        Ok(())
    }

    /// Every audit entry of `branch` the central store holds, in order.
    pub fn audit_rows(&mut self, branch: &str) -> Result<Vec<AuditRow>, CentralError> {
        self.unbounded()?;
        let at = self.at.clone();
        let rows = self
            .client
            .query(
                "SELECT seq, id, at, operator, host, command, subject, outcome, exit_code, \
                 paid_call, records, key_version, purpose_enc, error_enc, mac, os_user, \
                 lookup_id, purged_before FROM gbdfl_audit WHERE branch = $1 ORDER BY seq",
                &[&branch],
            )
            .map_err(|e| statement_error(&at, &e))?;
        Ok(rows.iter().map(audit_row).collect())
    }

    /// Deletes every lookup requested before `before_ms` (head office
    /// only: row-level security lets no branch delete) and records the
    /// purge in `gbdfl_purges`, in one transaction.
    pub fn purge(
        &mut self,
        before_ms: i64,
        operator: &str,
        now_ms: i64,
    ) -> Result<u64, CentralError> {
        self.unbounded()?;
        let at = self.at.clone();
        let err = |e: postgres::Error| statement_error(&at, &e);
        let mut tx = self.client.transaction().map_err(err)?;
        let n = tx
            .execute(
                "DELETE FROM gbdfl_lookups WHERE requested_at < $1",
                &[&before_ms],
            )
            .map_err(err)?;
        let n_i = i64::try_from(n).unwrap_or(i64::MAX);
        tx.execute(
            "INSERT INTO gbdfl_purges (at, operator, before, lookups) VALUES ($1, $2, $3, $4)",
            &[&now_ms, &operator, &before_ms, &n_i],
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(n)
    }
}

/// What one branch's lookups in a period came to (`stats --central`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BranchStats {
    /// The branch's id.
    pub branch: String,
    /// Calls that may have reached the service (the one rule of paid
    /// calls: a call of the service whose request reached it or may have).
    pub paid_calls: u64,
    /// Answers from the branch's own cache.
    pub from_cache: u64,
    /// Answers from the organisation cache (another branch's record).
    pub from_org: u64,
    /// Attempts that provably never reached the service.
    pub not_sent: u64,
}

impl Central {
    /// Every branch's counts of lookups requested in `[from_ms, to_ms)`.
    /// Counts only: read from the plaintext columns, nothing opened.
    pub fn stats(&mut self, from_ms: i64, to_ms: i64) -> Result<Vec<BranchStats>, CentralError> {
        self.unbounded()?;
        let at = self.at.clone();
        let rows = self
            .client
            .query(
                "SELECT branch, \
                   count(*) FILTER (WHERE source = 'service' AND (reached IS NULL OR reached <> 'no')), \
                   count(*) FILTER (WHERE source = 'cache'), \
                   count(*) FILTER (WHERE source = 'org'), \
                   count(*) FILTER (WHERE source = 'service' AND reached = 'no') \
                 FROM gbdfl_lookups WHERE requested_at >= $1 AND requested_at < $2 \
                 GROUP BY branch ORDER BY branch",
                &[&from_ms, &to_ms],
            )
            .map_err(|e| statement_error(&at, &e))?;
        let n = |r: &postgres::Row, i: usize| u64::try_from(r.get::<_, i64>(i)).unwrap_or(0);
        Ok(rows
            .iter()
            .map(|r| BranchStats {
                branch: r.get(0),
                paid_calls: n(r, 1),
                from_cache: n(r, 2),
                from_org: n(r, 3),
                not_sent: n(r, 4),
            })
            .collect())
    }
}

impl Central {
    /// Every branch's lookups requested in `[from_ms, to_ms)`, branch by
    /// branch, oldest first, read in one snapshot: `release` hears how
    /// many there are before `f` sees the first (the caller writes its
    /// audit entry there), and no push between the two changes the count.
    pub fn lookups_in_period<E: From<CentralError>>(
        &mut self,
        from_ms: i64,
        to_ms: i64,
        release: impl FnOnce(u64) -> Result<(), E>,
        mut f: impl FnMut(&str, LookupRow) -> Result<(), E>,
    ) -> Result<u64, E> {
        self.unbounded()?;
        let at = self.at.clone();
        let err = |e: postgres::Error| statement_error(&at, &e);
        let mut tx = self
            .client
            .build_transaction()
            .isolation_level(postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .map_err(err)?;
        let n: i64 = tx
            .query_one(
                "SELECT count(*) FROM gbdfl_lookups WHERE requested_at >= $1 AND requested_at < $2",
                &[&from_ms, &to_ms],
            )
            .map_err(err)?
            .get(0);
        release(u64::try_from(n).unwrap_or(0))?;
        let sql = format!(
            "SELECT {LOOKUP_COLUMNS}, branch FROM gbdfl_lookups \
             WHERE requested_at >= $1 AND requested_at < $2 ORDER BY branch, requested_at, id"
        );
        let params: [&(dyn ToSql + Sync); 2] = [&from_ms, &to_ms];
        let mut rows = tx.query_raw(&sql, params.iter().copied()).map_err(err)?;
        let mut seen = 0u64;
        while let Some(r) = rows.next().map_err(err)? {
            let branch: String = r.get(23);
            f(&branch, lookup_row(&r).map_err(CentralError::from)?)?;
            seen += 1;
        }
        drop(rows);
        tx.commit().map_err(err)?;
        Ok(seen)
    }
}

impl Central {
    /// Every branch's lookups requested in `[from_ms, to_ms)`, counted per
    /// branch and UTC day as each branch's own summary counts them
    /// ([`gbdfl_store::DayStats`]), in branch then day order. Counts only:
    /// the server adds them up from plaintext columns.
    pub fn day_stats(
        &mut self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<(String, gbdfl_store::DayStats)>, CentralError> {
        self.unbounded()?;
        let at = self.at.clone();
        let rows = self
            .client
            .query(
                "SELECT branch, floor(requested_at::numeric / 86400000)::bigint AS day, \
                        source, outcome, status, reached, count(*) \
                 FROM gbdfl_lookups WHERE requested_at >= $1 AND requested_at < $2 \
                 GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1, 2",
                &[&from_ms, &to_ms],
            )
            .map_err(|e| statement_error(&at, &e))?;
        let mut out: Vec<(String, gbdfl_store::DayStats)> = Vec::new();
        for r in &rows {
            let branch: String = r.get(0);
            let day = r
                .get::<_, i64>(1)
                .checked_mul(86_400_000)
                .and_then(chrono::DateTime::from_timestamp_millis)
                .map(|t| t.date_naive());
            let id = format!("branch {branch}");
            let source = parse_source(&id, r.get(2))?;
            let outcome = parse_outcome(&id, r.get(3))?;
            let reached = parse_reached(&id, r.get(5))?;
            let n = u64::try_from(r.get::<_, i64>(6)).unwrap_or(0);
            if out.last().is_none_or(|(b, d)| *b != branch || d.day != day) {
                out.push((
                    branch.clone(),
                    gbdfl_store::DayStats {
                        day,
                        ..Default::default()
                    },
                ));
            }
            if let Some((_, d)) = out.last_mut() {
                d.count_many(source, outcome, r.get(4), reached, n);
            }
        }
        Ok(out)
    }
}
