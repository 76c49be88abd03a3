//! Settings: flags, environment and config file become one validated
//! [`Settings`], and each value remembers where it came from.
//!
//! Rules this module keeps: flags win over the environment, the environment
//! over the config file, the file over built-in defaults; an unknown key in
//! the config file is an error, not a silent no-op; the API key is read only
//! from GBDFL_API_KEY or the file named by `api_key_file`, never from a flag,
//! and is never printed. Nothing after this module sees clap.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use gbdfl_client::network::{NetworkConfig, ProxyEnv, ProxyUrl};
use gbdfl_client::{ApiKey, ClientConfig};
use gbdfl_core::limits::{self, CountRange, DurationRange};

/// The production endpoint of the GBDFL API.
pub const DEFAULT_BASE_URL: &str = "https://kyc.biometric.kz/api/v1/backend/gbdfl/";

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Flag(&'static str),
    Env(&'static str),
    ConfigFile(PathBuf),
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Flag(n) => write!(f, "flag {n}"),
            Origin::Env(n) => write!(f, "env {n}"),
            Origin::ConfigFile(p) => write!(f, "config {}", p.display()),
            Origin::Default => f.write_str("default"),
        }
    }
}

/// A value and where it came from.
#[derive(Debug, Clone)]
pub struct Setting<T> {
    pub value: T,
    pub origin: Origin,
}

/// Errors in settings. Each says which setting and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{name}: {message}")]
    Value { name: String, message: String },
    #[error("cannot find a home folder for the default {what}: pass {flag} or set {env}")]
    NoHome {
        what: &'static str,
        flag: &'static str,
        env: &'static str,
    },
    #[error(
        "no API key: set GBDFL_API_KEY, or `api_key_file = \"/path/to/file\"` in the config file (a file readable by you only)"
    )]
    NoApiKey,
    #[error("API key file {path}: {message}")]
    ApiKeyFile { path: PathBuf, message: String },
    /// A duration, count or size out of its range (the message names the source).
    #[error(transparent)]
    Range(#[from] gbdfl_core::limits::InputError),
    #[error(transparent)]
    Network(#[from] gbdfl_client::network::SetupError),
}

/// The config file, `config.toml`. Every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub db: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub operator: Option<String>,
    pub base_url: Option<String>,
    pub api_key_file: Option<PathBuf>,
    pub max_age: Option<String>,
    pub connect_timeout: Option<String>,
    pub timeout: Option<String>,
    pub max_response_bytes: Option<i64>,
    pub require_purpose: Option<bool>,
    pub retention: Option<String>,
    pub retry_base: Option<String>,
    pub retry_cap: Option<String>,
    pub retry_attempts: Option<i64>,
    /// The price of one paid call, for the HTML summary: `35.50` or "35.50".
    pub price_per_call: Option<PriceText>,
    pub currency: Option<String>,
    pub busy_timeout: Option<String>,
    pub proxy: Option<String>,
    pub proxy_password_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub central_url: Option<String>,
    pub central_password_file: Option<PathBuf>,
    pub branch: Option<String>,
    pub central_timeout: Option<String>,
    pub push_after_sync: Option<bool>,
}

/// What each config key holds, for messages about a value of the wrong type.
const FILE_KEYS: &[(&str, &str)] = &[
    ("db", "a path string"),
    ("key_file", "a path string"),
    ("operator", "a string"),
    ("base_url", "a URL string"),
    ("api_key_file", "a path string"),
    ("max_age", "a duration string like \"30d\""),
    ("connect_timeout", "a duration string like \"10s\""),
    ("timeout", "a duration string like \"60s\""),
    (
        "max_response_bytes",
        "a whole number of bytes like 10485760",
    ),
    ("require_purpose", "true or false"),
    ("retention", "a duration string like \"365d\""),
    ("retry_base", "a duration string like \"2s\""),
    ("retry_cap", "a duration string like \"60s\""),
    ("retry_attempts", "a whole number like 5"),
    ("busy_timeout", "a duration string like \"10s\""),
    (
        "proxy",
        "a proxy URL string like \"http://proxy.bank.kz:3128\"",
    ),
    ("proxy_password_file", "a path string"),
    ("ca_file", "a path string"),
    ("price_per_call", "a price like \"35.50\" or 35.5"),
    ("currency", "a string like \"KZT\""),
    (
        "central_url",
        "a URL string like \"postgresql://branch_almaty@db.bank.kz/gbdfl\"",
    ),
    ("central_password_file", "a path string"),
    ("branch", "a branch id string like \"almaty-1\""),
    ("central_timeout", "a duration string like \"2s\""),
    ("push_after_sync", "true or false"),
];

/// The first key of `text` whose value has the wrong type, as a message:
/// `max_age: expected a duration string like "30d", got integer 30`.
fn wrong_type(text: &str) -> Option<String> {
    let table: toml::Table = text.parse().ok()?;
    FILE_KEYS.iter().find_map(|&(key, expected)| {
        let v = table.get(key)?;
        let fits = match key {
            "max_response_bytes" | "retry_attempts" => v.is_integer(),
            "require_purpose" | "push_after_sync" => v.is_bool(),
            "price_per_call" => v.is_str() || v.is_integer() || v.is_float(),
            _ => v.is_str(),
        };
        (!fits).then(|| {
            format!(
                "{key}: expected {expected}, got {} {}",
                v.type_str(),
                gbdfl_core::limits::cut(&v.to_string(), 40)
            )
        })
    })
}

/// `price_per_call` as written: a TOML number or a string.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PriceText {
    Text(String),
    Integer(i64),
    Float(f64),
}

/// Values given on the command line (None when not given).
#[derive(Debug, Default, Clone)]
pub struct Flags {
    pub config: Option<PathBuf>,
    pub db: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub operator: Option<String>,
    pub base_url: Option<String>,
    pub json: bool,
}

/// The effective settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub config_file: Setting<PathBuf>,
    pub config_file_found: bool,
    pub db: Setting<PathBuf>,
    pub key_file: Setting<PathBuf>,
    pub operator: Setting<String>,
    pub base_url: Setting<String>,
    pub api_key_file: Option<Setting<PathBuf>>,
    pub api_key_in_env: bool,
    pub max_age: Setting<Duration>,
    pub connect_timeout: Setting<Duration>,
    pub timeout: Setting<Duration>,
    pub max_response_bytes: Setting<u64>,
    pub require_purpose: Setting<bool>,
    pub retention: Option<Setting<Duration>>,
    pub retry_base: Setting<Duration>,
    pub retry_cap: Setting<Duration>,
    pub retry_attempts: Setting<u32>,
    /// `price_per_call` with `currency`, when both are set.
    pub price: Option<Setting<gbdfl_report::html::Price>>,
    pub busy_timeout: Setting<Duration>,
    /// gbdfl's own proxy (GBDFL_PROXY or `proxy`), password held apart.
    pub proxy: Option<Setting<ProxyUrl>>,
    pub proxy_password_file: Option<Setting<PathBuf>>,
    /// GBDFL_PROXY_PASSWORD.
    pub proxy_password: gbdfl_client::network::Secret,
    /// The environment's HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY.
    pub proxy_env: ProxyEnv,
    pub ca_file: Option<Setting<PathBuf>>,
    /// The central store: GBDFL_CENTRAL_URL or `central_url`, else
    /// libpq's PGHOST and friends; never a flag.
    pub central_url: Option<Setting<String>>,
    pub central_password_file: Option<Setting<PathBuf>>,
    /// PGPASSWORD, when set.
    pub central_password_env: Option<zeroize::Zeroizing<String>>,
    /// This branch's id in the central store (GBDFL_BRANCH or `branch`).
    pub branch: Option<Setting<String>>,
    pub central_timeout: Setting<Duration>,
    pub push_after_sync: bool,
    pub json: bool,
    pub host: String,
}

fn project_dirs() -> Option<directories::ProjectDirs> {
    directories::ProjectDirs::from("", "", "gbdfl")
}

/// A default path in the user's folders; without a home folder, an error
/// naming the flag and the variable that set it instead.
fn home_path(
    dirs: Option<&directories::ProjectDirs>,
    path: impl FnOnce(&directories::ProjectDirs) -> PathBuf,
    (what, flag, env): (&'static str, &'static str, &'static str),
) -> Result<PathBuf, ConfigError> {
    dirs.map(path)
        .ok_or(ConfigError::NoHome { what, flag, env })
}

/// Where a config file value is named in messages: `FILE: key`.
fn file_source(file_path: &Path, key: &str) -> String {
    format!("config file {}: {key}", file_path.display())
}

/// Picks flag, then env, then file, then default.
fn pick<T>(
    flag: (Option<T>, &'static str),
    env: (Option<T>, &'static str),
    file: Option<T>,
    file_path: &Path,
    default: impl FnOnce() -> Result<T, ConfigError>,
) -> Result<Setting<T>, ConfigError> {
    if let Some(v) = flag.0 {
        return Ok(Setting {
            value: v,
            origin: Origin::Flag(flag.1),
        });
    }
    if let Some(v) = env.0 {
        return Ok(Setting {
            value: v,
            origin: Origin::Env(env.1),
        });
    }
    if let Some(v) = file {
        return Ok(Setting {
            value: v,
            origin: Origin::ConfigFile(file_path.to_owned()),
        });
    }
    Ok(Setting {
        value: default()?,
        origin: Origin::Default,
    })
}

/// Picks env, then file, for a setting with no default and no flag.
fn pick_optional<T>(
    env: (Option<T>, &'static str),
    file: Option<T>,
    file_path: &Path,
) -> Option<Setting<T>> {
    if let Some(v) = env.0 {
        return Some(Setting {
            value: v,
            origin: Origin::Env(env.1),
        });
    }
    file.map(|v| Setting {
        value: v,
        origin: Origin::ConfigFile(file_path.to_owned()),
    })
}

/// A duration or count setting with a default: its config key, its
/// variable, the default and the range a given value must fall in.
struct Ranged<T, R> {
    key: &'static str,
    env: &'static str,
    default: T,
    range: R,
}

const MAX_AGE: Ranged<Duration, DurationRange> = Ranged {
    key: "max_age",
    env: "GBDFL_MAX_AGE",
    default: Duration::from_secs(30 * 86_400),
    range: limits::MAX_AGE,
};
const CONNECT_TIMEOUT: Ranged<Duration, DurationRange> = Ranged {
    key: "connect_timeout",
    env: "GBDFL_CONNECT_TIMEOUT",
    default: Duration::from_secs(10),
    range: limits::TIMEOUT,
};
const TIMEOUT: Ranged<Duration, DurationRange> = Ranged {
    key: "timeout",
    env: "GBDFL_TIMEOUT",
    default: Duration::from_secs(60),
    range: limits::TIMEOUT,
};
const MAX_RESPONSE_BYTES: Ranged<u64, CountRange> = Ranged {
    key: "max_response_bytes",
    env: "GBDFL_MAX_RESPONSE_BYTES",
    default: 10 * 1024 * 1024,
    range: limits::MAX_RESPONSE_BYTES,
};
const RETRY_BASE: Ranged<Duration, DurationRange> = Ranged {
    key: "retry_base",
    env: "GBDFL_RETRY_BASE",
    default: Duration::from_secs(2),
    range: limits::RETRY,
};
const RETRY_CAP: Ranged<Duration, DurationRange> = Ranged {
    key: "retry_cap",
    env: "GBDFL_RETRY_CAP",
    default: Duration::from_secs(60),
    range: limits::RETRY,
};
const RETRY_ATTEMPTS: Ranged<u64, CountRange> = Ranged {
    key: "retry_attempts",
    env: "GBDFL_RETRY_ATTEMPTS",
    default: 5,
    range: limits::RETRY_ATTEMPTS,
};
const CENTRAL_TIMEOUT: Ranged<Duration, DurationRange> = Ranged {
    key: "central_timeout",
    env: "GBDFL_CENTRAL_TIMEOUT",
    default: gbdfl_central::DEFAULT_TIMEOUT,
    range: limits::TIMEOUT,
};
const BUSY_TIMEOUT: Ranged<Duration, DurationRange> = Ranged {
    key: "busy_timeout",
    env: "GBDFL_BUSY_TIMEOUT",
    default: Duration::from_secs(10),
    range: limits::BUSY_TIMEOUT,
};

/// Reads and parses a config file; a missing file is an empty config.
pub fn read_file_config(path: &Path) -> Result<Option<FileConfig>, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(ConfigError::File {
                path: path.to_owned(),
                message: e.to_string(),
            });
        }
    };
    toml::from_str::<FileConfig>(&text).map(Some).map_err(|e| {
        let mut message = e.message().to_owned();
        if message.contains("unknown field `api_key`") {
            message.push_str(". The API key is never kept in config.toml: put it in a file readable by you only and set api_key_file, or set GBDFL_API_KEY");
        } else if message.contains("unknown field") {
            message.push_str(". See docs/reference.md, \"Configuration and environment\", for the keys gbdfl knows");
        } else if let Some(m) = wrong_type(&text) {
            message = m;
        }
        ConfigError::File {
            path: path.to_owned(),
            message,
        }
    })
}

/// The config file and what it holds: `--config`, else GBDFL_CONFIG, else
/// config.toml in the user's config folder. A file named on purpose must
/// exist; only the default may be absent, and without a home folder there
/// is simply no default config file.
fn locate_config_file(
    flags: &Flags,
    env: &dyn Fn(&str) -> Option<String>,
    dirs: Option<&directories::ProjectDirs>,
) -> Result<(Setting<PathBuf>, Option<FileConfig>), ConfigError> {
    let config_file = pick(
        (flags.config.clone(), "--config"),
        (env("GBDFL_CONFIG").map(PathBuf::from), "GBDFL_CONFIG"),
        None,
        Path::new(""),
        || {
            home_path(
                dirs,
                |d| d.config_dir().join("config.toml"),
                ("config file", "--config", "GBDFL_CONFIG"),
            )
        },
    );
    let Ok(s) = config_file else {
        let none = Setting {
            value: PathBuf::new(),
            origin: Origin::Default,
        };
        return Ok((none, None));
    };
    let f = read_file_config(&s.value)?;
    if f.is_none() && s.origin != Origin::Default {
        return Err(ConfigError::File {
            path: s.value.clone(),
            message: format!(
                "no such file (named by {}): create it or fix the path",
                s.origin
            ),
        });
    }
    Ok((s, f))
}

/// Where the settings other than the config file's own path come from:
/// the environment (blank values count as unset), the config file, and
/// the user's folders for default paths.
struct Sources<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
    file: &'a FileConfig,
    /// The config file's path, for origins and messages.
    path: &'a Path,
    dirs: Option<&'a directories::ProjectDirs>,
}

impl Sources<'_> {
    fn env_path(&self, name: &str) -> Option<PathBuf> {
        (self.env)(name).map(PathBuf::from)
    }

    /// `db`: flag, env, file, else gbdfl.db in the user's data folder.
    fn db(&self, flags: &Flags) -> Result<Setting<PathBuf>, ConfigError> {
        pick(
            (flags.db.clone(), "--db"),
            (self.env_path("GBDFL_DB"), "GBDFL_DB"),
            self.file.db.clone(),
            self.path,
            || {
                home_path(
                    self.dirs,
                    |d| d.data_dir().join("gbdfl.db"),
                    ("database", "--db", "GBDFL_DB"),
                )
            },
        )
    }

    /// `key_file`: flag, env, file, else master.key in the user's data folder.
    fn key_file(&self, flags: &Flags) -> Result<Setting<PathBuf>, ConfigError> {
        pick(
            (flags.key_file.clone(), "--key-file"),
            (self.env_path("GBDFL_KEY_FILE"), "GBDFL_KEY_FILE"),
            self.file.key_file.clone(),
            self.path,
            || {
                home_path(
                    self.dirs,
                    |d| d.data_dir().join("master.key"),
                    ("key file", "--key-file", "GBDFL_KEY_FILE"),
                )
            },
        )
    }

    /// `operator`: flag, env, file, else the login name; checked.
    fn operator(&self, flags: &Flags) -> Result<Setting<String>, ConfigError> {
        let operator = pick(
            (flags.operator.clone(), "--operator"),
            ((self.env)("GBDFL_OPERATOR"), "GBDFL_OPERATOR"),
            self.file.operator.clone(),
            self.path,
            || {
                Ok(["USER", "USERNAME", "LOGNAME"]
                    .iter()
                    .find_map(|k| (self.env)(k))
                    .unwrap_or_else(gbdfl_core::os_user::name))
            },
        )?;
        validate_operator(&operator.value)?;
        Ok(operator)
    }

    /// `base_url`: flag, env, file, else the production endpoint.
    fn base_url(&self, flags: &Flags) -> Result<Setting<String>, ConfigError> {
        pick(
            (flags.base_url.clone(), "--base-url"),
            ((self.env)("GBDFL_BASE_URL"), "GBDFL_BASE_URL"),
            self.file.base_url.clone(),
            self.path,
            || Ok(DEFAULT_BASE_URL.to_owned()),
        )
    }

    /// `api_key_file`: env or file; never a flag, no default.
    fn api_key_file(&self) -> Option<Setting<PathBuf>> {
        pick_optional(
            (self.env_path("GBDFL_API_KEY_FILE"), "GBDFL_API_KEY_FILE"),
            self.file.api_key_file.clone(),
            self.path,
        )
    }

    /// A duration: env, file, else its default; a value given must be in range.
    fn duration(
        &self,
        setting: Ranged<Duration, DurationRange>,
        file: Option<&String>,
    ) -> Result<Setting<Duration>, ConfigError> {
        let Ranged {
            key,
            env,
            default,
            range,
        } = setting;
        let env_v = (self.env)(env)
            .map(|s| limits::parse_duration(env, &s, range))
            .transpose()?;
        let file_v = file
            .map(|s| limits::parse_duration(&file_source(self.path, key), s, range))
            .transpose()?;
        pick((None, ""), (env_v, env), file_v, self.path, || Ok(default))
    }

    /// A count: env, file, else its default; a value given must be in range.
    fn count(
        &self,
        setting: Ranged<u64, CountRange>,
        file: Option<i64>,
    ) -> Result<Setting<u64>, ConfigError> {
        let Ranged {
            key,
            env,
            default,
            range,
        } = setting;
        let env_v = (self.env)(env)
            .map(|s| limits::parse_count(env, &s, range))
            .transpose()?;
        let file_v = file
            .map(|n| limits::check_count(&file_source(self.path, key), i128::from(n), range))
            .transpose()?;
        pick((None, ""), (env_v, env), file_v, self.path, || Ok(default))
    }

    /// `require_purpose`: env (true/false, 1/0, yes/no), file, else false.
    fn require_purpose(&self) -> Result<Setting<bool>, ConfigError> {
        let name = "GBDFL_REQUIRE_PURPOSE";
        let env_v = (self.env)(name)
            .map(|v| match v.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" => Ok(true),
                "0" | "false" | "no" => Ok(false),
                _ => Err(ConfigError::Value {
                    name: name.into(),
                    message: format!("{} is not true or false", gbdfl_core::limits::shown(&v)),
                }),
            })
            .transpose()?;
        pick(
            (None, ""),
            (env_v, name),
            self.file.require_purpose,
            self.path,
            || Ok(false),
        )
    }

    /// `retention`: env or file, in range; unset unless given.
    fn retention(&self) -> Result<Option<Setting<Duration>>, ConfigError> {
        let env_v = (self.env)("GBDFL_RETENTION")
            .map(|s| limits::parse_duration("GBDFL_RETENTION", &s, limits::RETENTION))
            .transpose()?;
        let file_v = self
            .file
            .retention
            .as_ref()
            .map(|s| {
                limits::parse_duration(&file_source(self.path, "retention"), s, limits::RETENTION)
            })
            .transpose()?;
        Ok(pick_optional((env_v, "GBDFL_RETENTION"), file_v, self.path))
    }

    /// `price_per_call` with `currency`, from the file only: both or neither.
    fn price(&self) -> Result<Option<Setting<gbdfl_report::html::Price>>, ConfigError> {
        let file_error = |message: String| ConfigError::File {
            path: self.path.to_owned(),
            message,
        };
        let (price, currency) = match (&self.file.price_per_call, &self.file.currency) {
            (None, None) => return Ok(None),
            (Some(p), Some(c)) => (p, c),
            (Some(_), None) | (None, Some(_)) => {
                return Err(file_error("price_per_call and currency go together: set both (e.g. price_per_call = \"35.50\" and currency = \"KZT\") or neither".into()));
            }
        };
        let text = match price {
            PriceText::Text(s) => s.clone(),
            PriceText::Integer(n) => n.to_string(),
            PriceText::Float(f) => f.to_string(),
        };
        let value = gbdfl_report::html::Price::parse(&text, currency).map_err(file_error)?;
        Ok(Some(Setting {
            value,
            origin: Origin::ConfigFile(self.path.to_owned()),
        }))
    }
}

/// This machine's name, or "unknown".
fn host_name() -> String {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    if host.is_empty() {
        "unknown".into()
    } else {
        host
    }
}

/// A row of [`Settings::describe`]: (name, shown value, origin).
type Row = (&'static str, String, String);

/// The row of a setting, its value shown by `show`.
fn row<T>(name: &'static str, s: &Setting<T>, show: impl Fn(&T) -> String) -> Row {
    (name, show(&s.value), s.origin.to_string())
}

/// The row of a setting that may be unset: then `unset` is shown.
fn row_or<T>(
    name: &'static str,
    s: Option<&Setting<T>>,
    show: impl Fn(&T) -> String,
    unset: &str,
) -> Row {
    match s {
        Some(s) => row(name, s, show),
        None => (name, unset.to_owned(), "-".to_owned()),
    }
}

/// The row of a secret, never its value: set in the variable `in_env`,
/// read from `file`, or not set.
fn secret_row(
    name: &'static str,
    in_env: Option<&'static str>,
    file: Option<&Setting<PathBuf>>,
) -> Row {
    match (in_env, file) {
        (Some(var), _) => (name, "(set, redacted)".to_owned(), format!("env {var}")),
        (None, Some(f)) => (
            name,
            format!("(from file {}, redacted)", f.value.display()),
            f.origin.to_string(),
        ),
        (None, None) => (name, "(not set)".to_owned(), "-".to_owned()),
    }
}

fn shown_path(p: &impl AsRef<Path>) -> String {
    p.as_ref().display().to_string()
}

fn shown_duration(d: &Duration) -> String {
    humantime::format_duration(*d).to_string()
}

impl Settings {
    /// Resolves settings from flags, an environment lookup and the config
    /// file. The settings are read in this order, so the first bad value
    /// is the one reported.
    pub fn resolve(
        flags: &Flags,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Settings, ConfigError> {
        let env_nonempty = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        let dirs = project_dirs();
        let (config_file, file) = locate_config_file(flags, &env_nonempty, dirs.as_ref())?;
        let found = file.is_some();
        let file = file.unwrap_or_default();
        let from = Sources {
            env: &env_nonempty,
            file: &file,
            path: &config_file.value,
            dirs: dirs.as_ref(),
        };
        let db = from.db(flags)?;
        let key_file = from.key_file(flags)?;
        let operator = from.operator(flags)?;
        let base_url = from.base_url(flags)?;
        let api_key_file = from.api_key_file();
        let max_age = from.duration(MAX_AGE, file.max_age.as_ref())?;
        let connect_timeout = from.duration(CONNECT_TIMEOUT, file.connect_timeout.as_ref())?;
        let timeout = from.duration(TIMEOUT, file.timeout.as_ref())?;
        let max_response_bytes = from.count(MAX_RESPONSE_BYTES, file.max_response_bytes)?;
        let require_purpose = from.require_purpose()?;
        let retention = from.retention()?;
        let retry_base = from.duration(RETRY_BASE, file.retry_base.as_ref())?;
        let retry_cap = from.duration(RETRY_CAP, file.retry_cap.as_ref())?;
        let retry_attempts = from.count(RETRY_ATTEMPTS, file.retry_attempts)?;
        let price = from.price()?;
        let busy_timeout = from.duration(BUSY_TIMEOUT, file.busy_timeout.as_ref())?;
        let central_timeout = from.duration(CENTRAL_TIMEOUT, file.central_timeout.as_ref())?;
        // GBDFL_CENTRAL_URL, then the config file, then libpq's variables.
        let central_url = pick_optional(
            (env_nonempty("GBDFL_CENTRAL_URL"), "GBDFL_CENTRAL_URL"),
            file.central_url.clone(),
            &config_file.value,
        )
        .or_else(|| {
            libpq_url(&env_nonempty).map(|url| Setting {
                value: url,
                origin: Origin::Env("PGHOST"),
            })
        });
        let central_password_file = pick_optional(
            (
                env_nonempty("GBDFL_CENTRAL_PASSWORD_FILE").map(PathBuf::from),
                "GBDFL_CENTRAL_PASSWORD_FILE",
            ),
            file.central_password_file.clone(),
            &config_file.value,
        );
        let branch = pick_optional(
            (env_nonempty("GBDFL_BRANCH"), "GBDFL_BRANCH"),
            file.branch.clone(),
            &config_file.value,
        );
        let (proxy, proxy_password_file, ca_file) =
            network_settings(&env_nonempty, &file, &config_file.value)?;
        Ok(Settings {
            price,
            config_file,
            config_file_found: found,
            db,
            key_file,
            operator,
            base_url,
            api_key_file,
            api_key_in_env: env_nonempty("GBDFL_API_KEY").is_some(),
            max_age,
            connect_timeout,
            timeout,
            max_response_bytes,
            require_purpose,
            retention,
            retry_base,
            retry_cap,
            retry_attempts: Setting {
                // At most 100 by the range.
                value: u32::try_from(retry_attempts.value).unwrap_or(u32::MAX),
                origin: retry_attempts.origin,
            },
            busy_timeout,
            proxy,
            proxy_password_file,
            proxy_password: gbdfl_client::network::Secret(
                env_nonempty("GBDFL_PROXY_PASSWORD").map(zeroize::Zeroizing::new),
            ),
            proxy_env: ProxyEnv::read(env),
            ca_file,
            central_url,
            central_password_file,
            central_password_env: env_nonempty("PGPASSWORD").map(zeroize::Zeroizing::new),
            branch,
            central_timeout,
            push_after_sync: file.push_after_sync.unwrap_or(false),
            json: flags.json,
            host: host_name(),
        })
    }

    /// How to reach the central store; `None` when none is set.
    pub fn central_target(&self) -> Result<Option<gbdfl_central::Target>, ConfigError> {
        let Some(url) = &self.central_url else {
            return Ok(None);
        };
        let password = match &self.central_password_file {
            Some(f) => Some(read_secret_file(&f.value, "central_password_file")?),
            None => self.central_password_env.clone(),
        };
        Ok(Some(gbdfl_central::Target {
            url: url.value.clone(),
            origin: url.origin.to_string(),
            password,
            connect_timeout: self.central_timeout.value,
        }))
    }

    /// The central store and this branch's id, or a message naming the
    /// settings to make.
    pub fn central_branch(&self) -> Result<(gbdfl_central::Target, String), ConfigError> {
        let target = self.central_target()?.ok_or_else(no_central)?;
        let branch = self.branch.as_ref().ok_or_else(|| ConfigError::Value {
            name: "branch".into(),
            message: "no branch id: set GBDFL_BRANCH, or `branch = \"almaty-1\"` in config.toml (head office gives each branch its id with `gbdfl central add-branch`)".into(),
        })?;
        // A malformed id is told before any connection is tried.
        gbdfl_central::check_branch_id(&branch.value).map_err(|e| ConfigError::Value {
            name: format!("branch ({})", branch.origin),
            message: match e {
                gbdfl_central::CentralError::Settings { message, .. } => message,
                other => other.to_string(),
            },
        })?;
        Ok((target, branch.value.clone()))
    }

    /// The client settings.
    pub fn client_config(&self) -> ClientConfig {
        ClientConfig {
            base_url: self.base_url.value.clone(),
            connect_timeout: self.connect_timeout.value,
            timeout: self.timeout.value,
            max_body_bytes: self.max_response_bytes.value,
            network: self.network(),
        }
    }

    /// The proxy and trust settings of the path to the service.
    pub fn network(&self) -> NetworkConfig {
        NetworkConfig {
            proxy: self
                .proxy
                .as_ref()
                .map(|p| (p.origin.to_string(), p.value.clone())),
            proxy_password: self.proxy_password.clone(),
            proxy_password_file: self.proxy_password_file.as_ref().map(|f| f.value.clone()),
            env: self.proxy_env.clone(),
            ca_file: self.ca_file.as_ref().map(|f| f.value.clone()),
        }
    }

    /// How `sync` spaces the attempts of one request.
    pub fn backoff(&self) -> gbdfl_service::sync::Backoff {
        gbdfl_service::sync::Backoff {
            base: self.retry_base.value,
            cap: self.retry_cap.value.max(self.retry_base.value),
            max_attempts: self.retry_attempts.value,
        }
    }

    /// The API key: GBDFL_API_KEY, else the file named by api_key_file.
    pub fn api_key(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<ApiKey, ConfigError> {
        if let Some(k) = env("GBDFL_API_KEY").filter(|k| !k.trim().is_empty()) {
            return Ok(ApiKey::new(k));
        }
        let Some(file) = &self.api_key_file else {
            return Err(ConfigError::NoApiKey);
        };
        let path = &file.value;
        gbdfl_store::keyfile::check_private(path).map_err(|e| ConfigError::ApiKeyFile {
            path: path.clone(),
            message: match e {
                gbdfl_store::keyfile::KeyFileError::Missing(_) => format!(
                    "no such file (named by {}): put the organisation's API key in it, readable by you only, or fix the path",
                    file.origin
                ),
                e => e.to_string(),
            },
        })?;
        let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
            ConfigError::ApiKeyFile {
                path: path.clone(),
                message: e.to_string(),
            }
        })?);
        let key = ApiKey::new(text.trim().to_owned());
        if key.is_empty() {
            return Err(ConfigError::ApiKeyFile {
                path: path.clone(),
                message: "the file is empty".into(),
            });
        }
        Ok(key)
    }

    /// Every setting as (name, shown value, origin), secrets redacted, in
    /// the order `gbdfl config` lists them.
    pub fn describe(&self) -> Vec<(&'static str, String, String)> {
        let text = |s: &String| s.clone();
        let mut rows = vec![
            self.config_file_row(),
            row("db", &self.db, shown_path),
            row("key_file", &self.key_file, shown_path),
            row("operator", &self.operator, text),
            ("host", self.host.clone(), "system".into()),
            row("base_url", &self.base_url, text),
            secret_row(
                "api_key",
                self.api_key_in_env.then_some("GBDFL_API_KEY"),
                self.api_key_file.as_ref(),
            ),
        ];
        for (name, s) in [
            ("max_age", &self.max_age),
            ("connect_timeout", &self.connect_timeout),
            ("timeout", &self.timeout),
            ("retry_base", &self.retry_base),
            ("retry_cap", &self.retry_cap),
            ("busy_timeout", &self.busy_timeout),
        ] {
            rows.push(row(name, s, shown_duration));
        }
        rows.push(row("require_purpose", &self.require_purpose, |b| {
            b.to_string()
        }));
        let retention = self.retention.as_ref();
        rows.push(row_or("retention", retention, shown_duration, "(not set)"));
        rows.push(row("retry_attempts", &self.retry_attempts, |n| {
            n.to_string()
        }));
        rows.extend(self.network_rows());
        rows.push(row("max_response_bytes", &self.max_response_bytes, |n| {
            n.to_string()
        }));
        let price = |p: &gbdfl_report::html::Price| {
            let amount = gbdfl_report::html::money(p.hundredths, gbdfl_report::html::Lang::En);
            format!("{amount} {}", p.currency)
        };
        rows.push(row_or(
            "price_per_call",
            self.price.as_ref(),
            price,
            "(not set)",
        ));
        rows
    }

    /// The config file's row: its path, and whether it is there.
    fn config_file_row(&self) -> Row {
        let absent = if self.config_file_found {
            ""
        } else {
            " (not present)"
        };
        row("config_file", &self.config_file, |p| {
            format!("{}{absent}", p.display())
        })
    }

    /// The rows of the path to the service: proxy, its password, NO_PROXY,
    /// the extra trust roots.
    fn network_rows(&self) -> [Row; 4] {
        let proxy = match (&self.proxy, &self.proxy_env) {
            (Some(p), _) => row("proxy", p, |u| u.to_string()),
            (None, e) => match e.https.as_ref().or(e.all.as_ref()) {
                Some((name, v)) => (
                    "proxy",
                    gbdfl_client::network::redact_proxy(v),
                    format!("env {name}"),
                ),
                None => ("proxy", "(none: direct)".to_owned(), "-".to_owned()),
            },
        };
        let no_proxy = match &self.proxy_env.no {
            Some((name, v)) => ("no_proxy", v.clone(), format!("env {name}")),
            None => ("no_proxy", "(not set)".to_owned(), "-".to_owned()),
        };
        [
            proxy,
            secret_row(
                "proxy_password",
                self.proxy_password
                    .0
                    .is_some()
                    .then_some("GBDFL_PROXY_PASSWORD"),
                self.proxy_password_file.as_ref(),
            ),
            no_proxy,
            row_or(
                "ca_file",
                self.ca_file.as_ref(),
                shown_path,
                "(not set: the system's trust store only)",
            ),
        ]
    }

    /// The settings as a JSON-friendly map (for `config --json`).
    pub fn describe_map(&self) -> BTreeMap<&'static str, (String, String)> {
        self.describe()
            .into_iter()
            .map(|(k, v, o)| (k, (v, o)))
            .collect()
    }
}

/// gbdfl's own proxy, its password file, and the extra trust roots.
#[allow(clippy::type_complexity)]
fn network_settings(
    env: &dyn Fn(&str) -> Option<String>,
    file: &FileConfig,
    fp: &Path,
) -> Result<
    (
        Option<Setting<ProxyUrl>>,
        Option<Setting<PathBuf>>,
        Option<Setting<PathBuf>>,
    ),
    ConfigError,
> {
    let value_err = ConfigError::Network;
    let env_proxy = env("GBDFL_PROXY")
        .map(|v| ProxyUrl::parse("GBDFL_PROXY", &v, true))
        .transpose()
        .map_err(value_err)?;
    let file_proxy = file
        .proxy
        .as_deref()
        .filter(|v| !v.trim().is_empty())
        .map(|v| ProxyUrl::parse("proxy", v, false))
        .transpose()
        .map_err(value_err)?;
    let proxy = pick_optional((env_proxy, "GBDFL_PROXY"), file_proxy, fp);
    let password_file = pick_optional(
        (
            env("GBDFL_PROXY_PASSWORD_FILE").map(PathBuf::from),
            "GBDFL_PROXY_PASSWORD_FILE",
        ),
        file.proxy_password_file.clone(),
        fp,
    );
    let env_password = env("GBDFL_PROXY_PASSWORD").map(zeroize::Zeroizing::new);
    let proxy = match proxy {
        Some(p) => {
            if (env_password.is_some() || password_file.is_some()) && !p.value.has_user() {
                return Err(ConfigError::Value {
                    name: "proxy".into(),
                    message: format!(
                        "a proxy password is set ({}) but the proxy URL {} names no user: write it as http://USER@host:port",
                        gbdfl_client::network::PROXY_PASSWORD_SETTINGS,
                        p.value
                    ),
                });
            }
            Some(p)
        }
        None => None,
    };
    let ca_file = pick_optional(
        (env("GBDFL_CA_FILE").map(PathBuf::from), "GBDFL_CA_FILE"),
        file.ca_file.clone(),
        fp,
    );
    Ok((proxy, password_file, ca_file))
}

fn validate_operator(op: &str) -> Result<(), ConfigError> {
    let bad = op.trim().is_empty() || op.chars().count() > 64 || op.chars().any(char::is_control);
    if bad {
        return Err(ConfigError::Value {
            name: "operator".into(),
            message: format!(
                "{} is not a usable operator name: 1 to 64 printable characters",
                gbdfl_core::limits::shown(op)
            ),
        });
    }
    Ok(())
}

/// No central store set: the message names the settings.
pub fn no_central() -> ConfigError {
    ConfigError::Value {
        name: "central_url".into(),
        message: "no central store is set: set GBDFL_CENTRAL_URL, or `central_url = \"postgresql://USER@HOST/DATABASE\"` in config.toml (libpq's PGHOST, PGUSER, PGDATABASE work too); the password goes in PGPASSWORD or the file named by central_password_file, never on the command line".into(),
    }
}

/// A URL made of libpq's variables (PGHOST, PGPORT, PGUSER, PGDATABASE,
/// PGSSLMODE, PGSSLROOTCERT), when PGHOST is set.
fn libpq_url(env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let host = env("PGHOST")?;
    let mut u = url::Url::parse("postgresql://localhost").ok()?;
    let socket = host.starts_with('/');
    if !socket {
        u.set_host(Some(&host)).ok()?;
    }
    if let Some(port) = env("PGPORT").and_then(|p| p.parse::<u16>().ok()) {
        let _ = u.set_port(Some(port));
    }
    let user = env("PGUSER").or_else(|| std::env::var("USER").ok())?;
    u.set_username(&user).ok()?;
    u.set_path(&env("PGDATABASE").unwrap_or_else(|| user.clone()));
    {
        let mut q = u.query_pairs_mut();
        if socket {
            q.append_pair("host", &host);
        }
        if let Some(m) = env("PGSSLMODE") {
            q.append_pair("sslmode", &m);
        }
        if let Some(c) = env("PGSSLROOTCERT") {
            q.append_pair("sslrootcert", &c);
        }
    }
    let text = u.to_string();
    Some(text.trim_end_matches('?').to_owned())
}

/// A secret from a file readable by its owner only, without its line end.
fn read_secret_file(path: &Path, name: &str) -> Result<zeroize::Zeroizing<String>, ConfigError> {
    let err = |message: String| ConfigError::Value {
        name: name.into(),
        message: format!("{}: {message}", path.display()),
    };
    gbdfl_store::keyfile::check_private(path).map_err(|e| err(e.to_string()))?;
    let text =
        zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?);
    let secret = zeroize::Zeroizing::new(text.trim_end_matches(['\r', '\n']).to_owned());
    if secret.is_empty() {
        return Err(err("the file is empty: put the password in it".into()));
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn flag_beats_env_beats_file_beats_default() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config.toml");
        std::fs::write(
            &cfg,
            "db = \"/file/db\"\noperator = \"file-op\"\nmax_age = \"7d\"\n",
        )
        .unwrap();
        let env = env_of(&[
            ("GBDFL_CONFIG", cfg.to_str().unwrap()),
            ("GBDFL_DB", "/env/db"),
            ("USER", "u"),
        ]);
        let s = Settings::resolve(&Flags::default(), &env).unwrap();
        assert_eq!(s.db.value, PathBuf::from("/env/db"));
        assert_eq!(s.db.origin, Origin::Env("GBDFL_DB"));
        assert_eq!(s.operator.value, "file-op");
        assert_eq!(s.max_age.value, Duration::from_secs(7 * 86400));
        let flags = Flags {
            db: Some("/flag/db".into()),
            ..Flags::default()
        };
        let s = Settings::resolve(&flags, &env).unwrap();
        assert_eq!(s.db.value, PathBuf::from("/flag/db"));
        assert_eq!(s.base_url.origin, Origin::Default);
    }

    #[test]
    fn unknown_key_and_api_key_in_config_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config.toml");
        std::fs::write(&cfg, "api_key = \"secret\"\n").unwrap();
        let env = env_of(&[("GBDFL_CONFIG", cfg.to_str().unwrap())]);
        let e = Settings::resolve(&Flags::default(), &env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("api_key_file"), "{e}");
        assert!(!e.contains("secret"), "{e}");
        std::fs::write(&cfg, "colour = 1\n").unwrap();
        let e = Settings::resolve(&Flags::default(), &env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("colour"), "{e}");
    }
}
