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

use crate::client::{ApiKey, ClientConfig};

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
    pub max_response_bytes: Option<u64>,
    pub require_purpose: Option<bool>,
    pub retention: Option<String>,
    pub retry_base: Option<String>,
    pub retry_cap: Option<String>,
    pub retry_attempts: Option<u32>,
    pub busy_timeout: Option<String>,
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
    pub busy_timeout: Setting<Duration>,
    pub json: bool,
    pub host: String,
}

fn project_dirs() -> Option<directories::ProjectDirs> {
    directories::ProjectDirs::from("", "", "gbdfl")
}

/// Parses a duration such as `30d`, `12h`, `90s`, `1h 30m`.
pub fn parse_duration(name: &str, s: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(s.trim()).map_err(|e| ConfigError::Value {
        name: name.to_owned(),
        message: format!("{s:?} is not a duration ({e}); write e.g. 30d, 12h, 90s"),
    })
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

fn duration_setting(
    name: &'static str,
    env_name: &'static str,
    env: &dyn Fn(&str) -> Option<String>,
    file: Option<&String>,
    file_path: &Path,
    default: Duration,
) -> Result<Setting<Duration>, ConfigError> {
    let env_v = env(env_name)
        .map(|s| parse_duration(env_name, &s))
        .transpose()?;
    let file_v = file.map(|s| parse_duration(name, s)).transpose()?;
    pick((None, ""), (env_v, env_name), file_v, file_path, || {
        Ok(default)
    })
}

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
        }
        ConfigError::File {
            path: path.to_owned(),
            message,
        }
    })
}

impl Settings {
    /// Resolves settings from flags, an environment lookup and the config file.
    pub fn resolve(
        flags: &Flags,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Settings, ConfigError> {
        let env_nonempty = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        let dirs = project_dirs();
        let config_file = pick(
            (flags.config.clone(), "--config"),
            (
                env_nonempty("GBDFL_CONFIG").map(PathBuf::from),
                "GBDFL_CONFIG",
            ),
            None,
            Path::new(""),
            || {
                dirs.as_ref()
                    .map(|d| d.config_dir().join("config.toml"))
                    .ok_or(ConfigError::NoHome {
                        what: "config file",
                        flag: "--config",
                        env: "GBDFL_CONFIG",
                    })
            },
        );
        // Without a home folder there is simply no default config file.
        let (config_file, file) = match config_file {
            Ok(s) => {
                let f = read_file_config(&s.value)?;
                // A file named on purpose must exist; only the default may be absent.
                if f.is_none() && s.origin != Origin::Default {
                    return Err(ConfigError::File {
                        path: s.value.clone(),
                        message: format!(
                            "no such file (named by {}): create it or fix the path",
                            s.origin
                        ),
                    });
                }
                (s, f)
            }
            Err(_) => (
                Setting {
                    value: PathBuf::new(),
                    origin: Origin::Default,
                },
                None,
            ),
        };
        let found = file.is_some();
        let file = file.unwrap_or_default();
        let fp = config_file.value.clone();

        let db = pick(
            (flags.db.clone(), "--db"),
            (env_nonempty("GBDFL_DB").map(PathBuf::from), "GBDFL_DB"),
            file.db.clone(),
            &fp,
            || {
                dirs.as_ref()
                    .map(|d| d.data_dir().join("gbdfl.db"))
                    .ok_or(ConfigError::NoHome {
                        what: "database",
                        flag: "--db",
                        env: "GBDFL_DB",
                    })
            },
        )?;
        let key_file = pick(
            (flags.key_file.clone(), "--key-file"),
            (
                env_nonempty("GBDFL_KEY_FILE").map(PathBuf::from),
                "GBDFL_KEY_FILE",
            ),
            file.key_file.clone(),
            &fp,
            || {
                dirs.as_ref()
                    .map(|d| d.data_dir().join("master.key"))
                    .ok_or(ConfigError::NoHome {
                        what: "key file",
                        flag: "--key-file",
                        env: "GBDFL_KEY_FILE",
                    })
            },
        )?;
        let operator = pick(
            (flags.operator.clone(), "--operator"),
            (env_nonempty("GBDFL_OPERATOR"), "GBDFL_OPERATOR"),
            file.operator.clone(),
            &fp,
            || {
                Ok(["USER", "USERNAME", "LOGNAME"]
                    .iter()
                    .find_map(|k| env_nonempty(k))
                    .unwrap_or_else(|| "unknown".to_owned()))
            },
        )?;
        validate_operator(&operator.value)?;
        let base_url = pick(
            (flags.base_url.clone(), "--base-url"),
            (env_nonempty("GBDFL_BASE_URL"), "GBDFL_BASE_URL"),
            file.base_url.clone(),
            &fp,
            || Ok(DEFAULT_BASE_URL.to_owned()),
        )?;
        let api_key_file = pick(
            (None, ""),
            (
                env_nonempty("GBDFL_API_KEY_FILE").map(PathBuf::from),
                "GBDFL_API_KEY_FILE",
            ),
            file.api_key_file.clone(),
            &fp,
            || Err(ConfigError::NoApiKey),
        )
        .ok();
        let max_age = duration_setting(
            "max_age",
            "GBDFL_MAX_AGE",
            &env_nonempty,
            file.max_age.as_ref(),
            &fp,
            Duration::from_secs(30 * 86_400),
        )?;
        let connect_timeout = duration_setting(
            "connect_timeout",
            "GBDFL_CONNECT_TIMEOUT",
            &env_nonempty,
            file.connect_timeout.as_ref(),
            &fp,
            Duration::from_secs(10),
        )?;
        let timeout = duration_setting(
            "timeout",
            "GBDFL_TIMEOUT",
            &env_nonempty,
            file.timeout.as_ref(),
            &fp,
            Duration::from_secs(60),
        )?;
        let max_response_bytes = pick(
            (None, ""),
            (
                env_nonempty("GBDFL_MAX_RESPONSE_BYTES")
                    .map(|s| {
                        s.trim().parse::<u64>().map_err(|_| ConfigError::Value {
                            name: "GBDFL_MAX_RESPONSE_BYTES".into(),
                            message: format!("{s:?} is not a whole number of bytes"),
                        })
                    })
                    .transpose()?,
                "GBDFL_MAX_RESPONSE_BYTES",
            ),
            file.max_response_bytes,
            &fp,
            || Ok(10 * 1024 * 1024),
        )?;
        let require_purpose = pick(
            (None, ""),
            (
                env_nonempty("GBDFL_REQUIRE_PURPOSE")
                    .map(|v| match v.trim().to_ascii_lowercase().as_str() {
                        "1" | "true" | "yes" => Ok(true),
                        "0" | "false" | "no" => Ok(false),
                        _ => Err(ConfigError::Value {
                            name: "GBDFL_REQUIRE_PURPOSE".into(),
                            message: format!("{v:?} is not true or false"),
                        }),
                    })
                    .transpose()?,
                "GBDFL_REQUIRE_PURPOSE",
            ),
            file.require_purpose,
            &fp,
            || Ok(false),
        )?;
        let retention = {
            let env_v = env_nonempty("GBDFL_RETENTION")
                .map(|s| parse_duration("GBDFL_RETENTION", &s))
                .transpose()?;
            let file_v = file
                .retention
                .as_ref()
                .map(|s| parse_duration("retention", s))
                .transpose()?;
            pick((None, ""), (env_v, "GBDFL_RETENTION"), file_v, &fp, || {
                Err(ConfigError::NoApiKey)
            })
            .ok()
        };
        let retry_base = duration_setting(
            "retry_base",
            "GBDFL_RETRY_BASE",
            &env_nonempty,
            file.retry_base.as_ref(),
            &fp,
            Duration::from_secs(2),
        )?;
        let retry_cap = duration_setting(
            "retry_cap",
            "GBDFL_RETRY_CAP",
            &env_nonempty,
            file.retry_cap.as_ref(),
            &fp,
            Duration::from_secs(60),
        )?;
        let retry_attempts = pick(
            (None, ""),
            (
                env_nonempty("GBDFL_RETRY_ATTEMPTS")
                    .map(|s| match s.trim().parse::<u32>() {
                        Ok(n) if n >= 1 => Ok(n),
                        _ => Err(ConfigError::Value {
                            name: "GBDFL_RETRY_ATTEMPTS".into(),
                            message: format!("{s:?} is not a whole number of at least 1"),
                        }),
                    })
                    .transpose()?,
                "GBDFL_RETRY_ATTEMPTS",
            ),
            file.retry_attempts,
            &fp,
            || Ok(5),
        )?;
        if retry_attempts.value == 0 {
            return Err(ConfigError::Value {
                name: "retry_attempts".into(),
                message: "must be at least 1".into(),
            });
        }
        let busy_timeout = duration_setting(
            "busy_timeout",
            "GBDFL_BUSY_TIMEOUT",
            &env_nonempty,
            file.busy_timeout.as_ref(),
            &fp,
            Duration::from_secs(10),
        )?;
        let host = gethostname::gethostname().to_string_lossy().into_owned();
        Ok(Settings {
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
            retry_attempts,
            busy_timeout,
            json: flags.json,
            host: if host.is_empty() {
                "unknown".into()
            } else {
                host
            },
        })
    }

    /// The client settings.
    pub fn client_config(&self) -> ClientConfig {
        ClientConfig {
            base_url: self.base_url.value.clone(),
            connect_timeout: self.connect_timeout.value,
            timeout: self.timeout.value,
            max_body_bytes: self.max_response_bytes.value,
        }
    }

    /// How `sync` spaces the attempts of one request.
    pub fn backoff(&self) -> crate::sync::Backoff {
        crate::sync::Backoff {
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
        crate::keyfile::check_private(path).map_err(|e| ConfigError::ApiKeyFile {
            path: path.clone(),
            message: e.to_string(),
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

    /// Every setting as (name, shown value, origin), secrets redacted.
    pub fn describe(&self) -> Vec<(&'static str, String, String)> {
        let mut rows = vec![
            (
                "config_file",
                format!(
                    "{}{}",
                    self.config_file.value.display(),
                    if self.config_file_found {
                        ""
                    } else {
                        " (not present)"
                    }
                ),
                self.config_file.origin.to_string(),
            ),
            (
                "db",
                self.db.value.display().to_string(),
                self.db.origin.to_string(),
            ),
            (
                "key_file",
                self.key_file.value.display().to_string(),
                self.key_file.origin.to_string(),
            ),
            (
                "operator",
                self.operator.value.clone(),
                self.operator.origin.to_string(),
            ),
            ("host", self.host.clone(), "system".into()),
            (
                "base_url",
                self.base_url.value.clone(),
                self.base_url.origin.to_string(),
            ),
        ];
        let api_key = if self.api_key_in_env {
            ("(set, redacted)".to_owned(), "env GBDFL_API_KEY".to_owned())
        } else if let Some(f) = &self.api_key_file {
            (
                format!("(from file {}, redacted)", f.value.display()),
                f.origin.to_string(),
            )
        } else {
            ("(not set)".to_owned(), "-".to_owned())
        };
        rows.push(("api_key", api_key.0, api_key.1));
        for (name, s) in [
            ("max_age", &self.max_age),
            ("connect_timeout", &self.connect_timeout),
            ("timeout", &self.timeout),
            ("retry_base", &self.retry_base),
            ("retry_cap", &self.retry_cap),
            ("busy_timeout", &self.busy_timeout),
        ] {
            rows.push((
                name,
                humantime::format_duration(s.value).to_string(),
                s.origin.to_string(),
            ));
        }
        rows.push((
            "require_purpose",
            self.require_purpose.value.to_string(),
            self.require_purpose.origin.to_string(),
        ));
        rows.push(match &self.retention {
            Some(r) => (
                "retention",
                humantime::format_duration(r.value).to_string(),
                r.origin.to_string(),
            ),
            None => ("retention", "(not set)".to_owned(), "-".to_owned()),
        });
        rows.push((
            "retry_attempts",
            self.retry_attempts.value.to_string(),
            self.retry_attempts.origin.to_string(),
        ));
        rows.push((
            "max_response_bytes",
            self.max_response_bytes.value.to_string(),
            self.max_response_bytes.origin.to_string(),
        ));
        rows
    }

    /// The settings as a JSON-friendly map (for `config --json`).
    pub fn describe_map(&self) -> BTreeMap<&'static str, (String, String)> {
        self.describe()
            .into_iter()
            .map(|(k, v, o)| (k, (v, o)))
            .collect()
    }
}

fn validate_operator(op: &str) -> Result<(), ConfigError> {
    let bad = op.trim().is_empty() || op.chars().count() > 64 || op.chars().any(char::is_control);
    if bad {
        return Err(ConfigError::Value {
            name: "operator".into(),
            message: format!("{op:?} is not a usable operator name: 1 to 64 printable characters"),
        });
    }
    Ok(())
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
