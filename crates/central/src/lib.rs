//! The head office's store on PostgreSQL: every branch's sealed lookups
//! and audit trail in one place, for the organisation cache, head-office
//! reports and one audit of all branches.
//!
//! The server never receives a key. Rows go there as the branch keeps
//! them (sealed values, blind indexes, enumerated columns, times) with the
//! branch's id; whoever reads them back opens them with the organisation's
//! key on their own machine, as a branch opens its own database.
//!
//! Rules this crate keeps: the schema (`central.sql`) is checked on every
//! connection, and any other version is refused before a row is read or
//! written ([`Central::connect`]); a push writes each lookup and audit
//! entry exactly once however often it is cut short (the rows' own ids are
//! their keys, `ON CONFLICT DO NOTHING`), tested against a real server in
//! tests/cli/central.rs; the connection's TLS rules are those of [`conn`].

#![deny(missing_docs)]

pub mod conn;
mod push;
mod read;

use std::time::Duration;

pub use conn::Target;
pub use push::{PushCounts, Pushed};
pub use read::{BranchCounts, BranchHead, BranchStats};

use gbdfl_core::exit_code::ExitCode;

/// The central schema, applied by `gbdfl central init`.
pub const SCHEMA: &str = include_str!("../../../central.sql");
/// The schema version this build reads and writes (`gbdfl_meta.schema`).
pub const SCHEMA_VERSION: i64 = 1;

/// What can go wrong with the central store. Each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum CentralError {
    /// A setting (URL, TLS) is wrong.
    #[error("central store setting {origin}: {message}")]
    Settings {
        /// Which setting.
        origin: String,
        /// What is wrong and what to write instead.
        message: String,
    },
    /// The server could not be reached or the line dropped.
    #[error(
        "the central store at {at} cannot be reached: {cause}. Check the network and that the server runs. Nothing is lost: whatever a push did not send stays here, and the next push sends it"
    )]
    Unreachable {
        /// The server, without password.
        at: String,
        /// What the connection said.
        cause: String,
    },
    /// TLS could not be set up: the server's certificate is not trusted,
    /// expired, or for another name.
    #[error(
        "the central store at {at} could not be reached safely: {cause}. Nothing was sent. Trust the CA that signed the server's certificate (sslrootcert=FILE in the URL, or the system's trust store) and use the name the certificate is for"
    )]
    Tls {
        /// The server, without password.
        at: String,
        /// What TLS said.
        cause: String,
    },
    /// The server refused the login.
    #[error(
        "the central store at {at} refused the login: {cause}. Check the user and password (GBDFL_CENTRAL_URL, PGPASSWORD or central_password_file); head office makes a branch's login with `gbdfl central add-branch`"
    )]
    Login {
        /// The server, without password.
        at: String,
        /// What the server said.
        cause: String,
    },
    /// The database has no gbdfl schema, or another version of it.
    #[error("the central store at {at}: {message}")]
    Schema {
        /// The server, without password.
        at: String,
        /// What was found and what to do.
        message: String,
    },
    /// The branch's key is not the organisation's, or the branch id is
    /// another's.
    #[error("{0}")]
    Key(String),
    /// The server refused a row or a statement (row-level security,
    /// permissions, a constraint).
    #[error(
        "the central store refused it: {0}. Nothing was changed there by this statement; a branch may add only rows of its own id and never change or delete one"
    )]
    Refused(String),
    /// Another push of this branch is running.
    #[error(
        "another push of branch {0} is running (on this machine or another with the same branch id); wait for it to end, then push again"
    )]
    Busy(String),
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] gbdfl_store::StoreError),
}

impl CentralError {
    /// The documented exit code (docs/CENTRAL.md); a store error's is the
    /// store's (the caller maps it, as for any store error).
    pub fn exit_code(&self) -> ExitCode {
        match self {
            CentralError::Settings { .. } => ExitCode::InvalidInput,
            CentralError::Unreachable { .. } => ExitCode::Unreachable,
            CentralError::Tls { .. } => ExitCode::NetworkConfig,
            CentralError::Login { .. } | CentralError::Refused(_) => ExitCode::Refused,
            CentralError::Schema { .. } => ExitCode::Database,
            CentralError::Key(_) => ExitCode::KeyOrIntegrity,
            CentralError::Busy(_) => ExitCode::Failure,
            CentralError::Store(_) => ExitCode::Failure,
        }
    }

    /// Whether the line or the server went away (the caller goes on
    /// without the central store: the organisation cache is optional).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, CentralError::Unreachable { .. })
    }
}

/// A connection to the central store whose schema was checked.
pub struct Central {
    client: postgres::Client,
    at: String,
    /// How it was reached, for a second connection (a push sends on two).
    target: Target,
}

impl std::fmt::Debug for Central {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Central({})", self.at)
    }
}

impl Central {
    /// Connects and checks the schema version.
    pub fn connect(target: &Target) -> Result<Central, CentralError> {
        let mut c = Central::connect_unchecked(target)?;
        c.check_schema()?;
        Ok(c)
    }

    /// Connects without checking the schema (for `central init`).
    pub fn connect_unchecked(target: &Target) -> Result<Central, CentralError> {
        let parsed = target.parse()?;
        let at = parsed.shown.clone();
        let client = match &parsed.tls {
            conn::Tls::Off => parsed.config.connect(postgres::NoTls),
            conn::Tls::VerifyFull(root) => {
                let tls =
                    tokio_postgres_rustls::MakeRustlsConnect::new(conn::tls_config(root.as_ref())?);
                parsed.config.connect(tls)
            }
        }
        .map_err(|e| connect_error(&at, &e))?;
        let mut c = Central {
            client,
            at,
            target: target.clone(),
        };
        // Statements that hang (a held lock, a server that stopped
        // answering) end; the streaming reads of whole branches lift it
        // ([`Central::unbounded`]).
        let ms = target
            .connect_timeout
            .saturating_mul(5)
            .as_millis()
            .max(10_000);
        c.batch(&format!("SET statement_timeout = {ms}"))?;
        Ok(c)
    }

    /// Lets this connection's statements run as long as they take: the
    /// reads of a whole branch (reports, audit, pull) stream for minutes
    /// at head office's scale.
    pub(crate) fn unbounded(&mut self) -> Result<(), CentralError> {
        self.batch("SET statement_timeout = 0")
    }

    /// Holds this connection's statements to `limit` (the organisation
    /// cache: a server that stopped answering must not hold up a fetch).
    pub fn limit_statements(&mut self, limit: Duration) -> Result<(), CentralError> {
        let ms = limit.as_millis().max(1);
        self.batch(&format!("SET statement_timeout = {ms}"))
    }

    /// The server, for messages.
    pub fn at(&self) -> &str {
        &self.at
    }

    fn batch(&mut self, sql: &str) -> Result<(), CentralError> {
        let at = self.at.clone();
        self.client
            .batch_execute(sql)
            .map_err(|e| statement_error(&at, &e))
    }

    /// The schema version, or an error naming what to do.
    fn check_schema(&mut self) -> Result<(), CentralError> {
        let at = self.at.clone();
        let found = self
            .client
            .query_opt("SELECT value FROM gbdfl_meta WHERE key = 'schema'", &[]);
        let row = match found {
            Ok(r) => r,
            Err(e) if e.code() == Some(&postgres::error::SqlState::UNDEFINED_TABLE) => {
                return Err(CentralError::Schema {
                    at,
                    message: "it holds no gbdfl central schema: head office creates it with `gbdfl central init`".into(),
                });
            }
            Err(e) => return Err(statement_error(&at, &e)),
        };
        let text: String = row.map(|r| r.get(0)).unwrap_or_default();
        match text.parse::<i64>() {
            Ok(SCHEMA_VERSION) => Ok(()),
            Ok(v) if v > SCHEMA_VERSION => Err(CentralError::Schema {
                at,
                message: format!(
                    "its schema is version {v}, newer than this gbdfl knows ({SCHEMA_VERSION}): install the gbdfl version head office uses; nothing was written"
                ),
            }),
            _ => Err(CentralError::Schema {
                at,
                message: format!(
                    "its schema is version {text:?}, not {SCHEMA_VERSION}: head office upgrades it with `gbdfl central init` of this gbdfl version; nothing was written"
                ),
            }),
        }
    }

    /// Creates the schema (idempotent) and records the organisation's keys.
    /// Run by a PostgreSQL role that may create tables and roles.
    pub fn init(
        target: &Target,
        keys: &gbdfl_store::OrgKeys,
        now_ms: i64,
    ) -> Result<Central, CentralError> {
        let mut c = Central::connect_unchecked(target)?;
        let at = c.at.clone();
        let mut tx = c
            .client
            .transaction()
            .map_err(|e| statement_error(&at, &e))?;
        tx.batch_execute(SCHEMA)
            .map_err(|e| statement_error(&at, &e))?;
        let found: Option<Vec<u8>> = tx
            .query_opt(
                "SELECT check_value FROM gbdfl_org_keys ORDER BY version DESC LIMIT 1",
                &[],
            )
            .map_err(|e| statement_error(&at, &e))?
            .map(|r| r.get(0));
        match found {
            Some(v) if v != keys.check_value => {
                return Err(CentralError::Key(
                    "the central store already belongs to an organisation with another key: use that organisation's key file (or a new database for a new organisation)".into(),
                ));
            }
            Some(_) => {}
            None => {
                tx.execute(
                    "INSERT INTO gbdfl_org_keys (version, check_value, wrapped_keys, created_at) VALUES ($1, $2, $3, $4)",
                    &[&keys.version, &keys.check_value, &keys.wrapped_keys, &now_ms],
                )
                .map_err(|e| statement_error(&at, &e))?;
            }
        }
        tx.commit().map_err(|e| statement_error(&at, &e))?;
        c.check_schema()?;
        Ok(c)
    }

    /// The organisation's current keys as the central store holds them.
    pub fn org_keys(&mut self) -> Result<gbdfl_store::OrgKeys, CentralError> {
        let at = self.at.clone();
        let row = self
            .client
            .query_opt(
                "SELECT version, check_value, wrapped_keys FROM gbdfl_org_keys ORDER BY version DESC LIMIT 1",
                &[],
            )
            .map_err(|e| statement_error(&at, &e))?
            .ok_or_else(|| CentralError::Schema {
                at: at.clone(),
                message: "it holds no organisation key: head office runs `gbdfl central init`".into(),
            })?;
        Ok(gbdfl_store::OrgKeys {
            version: row.get(0),
            check_value: row.get(1),
            wrapped_keys: row.get(2),
        })
    }

    /// Makes a branch: its login role (a member of `gbdfl_branch`) with
    /// `password`, and its row. Run by head office's administrator.
    pub fn add_branch(
        &mut self,
        branch: &str,
        password: &str,
        now_ms: i64,
    ) -> Result<String, CentralError> {
        check_branch_id(branch)?;
        let at = self.at.clone();
        let keys = self.org_keys()?;
        let role = format!("gbdfl_b_{}", branch.replace('-', "_"));
        let mut tx = self
            .client
            .transaction()
            .map_err(|e| statement_error(&at, &e))?;
        let taken: Option<String> = tx
            .query_opt(
                "SELECT role FROM gbdfl_branches WHERE branch = $1",
                &[&branch],
            )
            .map_err(|e| statement_error(&at, &e))?
            .map(|r| r.get(0));
        if taken.is_some() {
            return Err(CentralError::Refused(format!(
                "branch {branch} exists already; pick another id, or give it a new password with ALTER ROLE {role} PASSWORD ..."
            )));
        }
        // Identifiers cannot be parameters: `role` is made of the checked
        // id ([a-z0-9_]). The password goes as its SCRAM verifier, made
        // here, so that no server log or activity view ever holds it.
        let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
        let quoted: String = tx
            .query_one("SELECT quote_literal($1::text)", &[&verifier])
            .map_err(|e| statement_error(&at, &e))?
            .get(0);
        tx.batch_execute(&format!(
            "CREATE ROLE {role} LOGIN PASSWORD {quoted} IN ROLE gbdfl_branch"
        ))
        .map_err(|e| statement_error(&at, &e))?;
        tx.execute(
            "INSERT INTO gbdfl_branches (branch, role, key_check, registered_at) VALUES ($1, $2, $3, $4)",
            &[&branch, &role, &keys.check_value, &now_ms],
        )
        .map_err(|e| statement_error(&at, &e))?;
        tx.commit().map_err(|e| statement_error(&at, &e))?;
        Ok(role)
    }

    /// Makes head office's reading role (a member of `gbdfl_head_office`).
    pub fn add_head_office(&mut self, role: &str, password: &str) -> Result<(), CentralError> {
        check_branch_id(role)?;
        let at = self.at.clone();
        let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
        let quoted: String = self
            .client
            .query_one("SELECT quote_literal($1::text)", &[&verifier])
            .map_err(|e| statement_error(&at, &e))?
            .get(0);
        let role = format!("gbdfl_h_{}", role.replace('-', "_"));
        self.batch(&format!(
            "CREATE ROLE {role} LOGIN PASSWORD {quoted} IN ROLE gbdfl_head_office"
        ))
    }

    /// Checks that this branch may write here with these keys: the
    /// organisation's key is the branch's, and the branch id is this
    /// login's. Nothing is written before this passes.
    pub fn check_branch(
        &mut self,
        branch: &str,
        store_keys: &gbdfl_store::OrgKeys,
    ) -> Result<(), CentralError> {
        check_branch_id(branch)?;
        let org = self.org_keys()?;
        if org.check_value != store_keys.check_value {
            return Err(CentralError::Key(format!(
                "this branch's key file is not the organisation's (its key check value differs from the one the central store at {} holds): nothing was sent. Use the organisation's key file; a branch database made with another key cannot be pushed",
                self.at
            )));
        }
        if org.wrapped_keys != store_keys.wrapped_keys {
            return Err(CentralError::Key(
                "this branch database has blind-index and audit keys of its own, not the organisation's: nothing was sent. Make the branch database with `gbdfl init` while the central store is set (it adopts the organisation's keys)".into(),
            ));
        }
        let at = self.at.clone();
        let row = self
            .client
            .query_opt(
                "SELECT role, key_check, role = session_user FROM gbdfl_branches WHERE branch = $1",
                &[&branch],
            )
            .map_err(|e| statement_error(&at, &e))?;
        let Some(row) = row else {
            return Err(CentralError::Refused(format!(
                "branch {branch} is not registered: head office adds it with `gbdfl central add-branch {branch}`"
            )));
        };
        let key_check: Vec<u8> = row.get(1);
        if key_check != store_keys.check_value {
            return Err(CentralError::Key(format!(
                "branch id {branch} is taken by a branch with another key: check the branch setting, or ask head office for your own branch id"
            )));
        }
        let mine: bool = row.get(2);
        let superuser: bool = self
            .client
            .query_one(
                "SELECT rolsuper FROM pg_roles WHERE rolname = session_user",
                &[],
            )
            .map_err(|e| statement_error(&at, &e))?
            .get(0);
        if !mine && !superuser {
            let role: String = row.get(0);
            return Err(CentralError::Refused(format!(
                "this login may not write for branch {branch} (that is role {role}'s): check the branch setting and the user of the central URL"
            )));
        }
        Ok(())
    }
}

/// Branch ids: short, lowercase, safe in a role name.
pub fn check_branch_id(branch: &str) -> Result<(), CentralError> {
    let ok = (1..=40).contains(&branch.len())
        && branch
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        && branch.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(CentralError::Settings {
            origin: "branch".into(),
            message: format!(
                "{branch:?} is not a branch id: 1 to 40 characters of a-z, 0-9, _ and -, starting with a letter or digit"
            ),
        })
    }
}

/// A failed connection, told apart: refused login or no server.
fn connect_error(at: &str, e: &postgres::Error) -> CentralError {
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        if *code == postgres::error::SqlState::INVALID_PASSWORD
            || *code == postgres::error::SqlState::INVALID_AUTHORIZATION_SPECIFICATION
            || *code == postgres::error::SqlState::INSUFFICIENT_PRIVILEGE
        {
            return CentralError::Login {
                at: at.to_owned(),
                cause: db.message().to_owned(),
            };
        }
        if *code == postgres::error::SqlState::INVALID_CATALOG_NAME {
            return CentralError::Schema {
                at: at.to_owned(),
                message: format!(
                    "{}: create the database first (createdb), then `gbdfl central init`",
                    db.message()
                ),
            };
        }
    }
    let cause = cause_chain(e);
    if cause.contains("certificate") || cause.contains("TLS") || cause.contains("tls") {
        return CentralError::Tls {
            at: at.to_owned(),
            cause,
        };
    }
    CentralError::Unreachable {
        at: at.to_owned(),
        cause,
    }
}

/// A failed statement: the line dropped, or the server refused it.
pub(crate) fn statement_error(at: &str, e: &postgres::Error) -> CentralError {
    match e.as_db_error() {
        Some(db) => {
            let code = db.code();
            if *code == postgres::error::SqlState::ADMIN_SHUTDOWN
                || *code == postgres::error::SqlState::CRASH_SHUTDOWN
                || *code == postgres::error::SqlState::CANNOT_CONNECT_NOW
                || *code == postgres::error::SqlState::QUERY_CANCELED
            {
                return CentralError::Unreachable {
                    at: at.to_owned(),
                    cause: db.message().to_owned(),
                };
            }
            if *code == postgres::error::SqlState::UNDEFINED_TABLE {
                return CentralError::Schema {
                    at: at.to_owned(),
                    message: format!("{}: head office runs `gbdfl central init`", db.message()),
                };
            }
            CentralError::Refused(db.message().to_owned())
        }
        None => CentralError::Unreachable {
            at: at.to_owned(),
            cause: cause_chain(e),
        },
    }
}

fn cause_chain(e: &postgres::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The default time allowed to reach the central store: the organisation
/// cache is asked before a paid call, and an unreachable server must not
/// hold the operator up.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
