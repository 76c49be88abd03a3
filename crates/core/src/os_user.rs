//! Who runs gbdfl, as the operating system says (never the environment).

/// The OS user running gbdfl, for a default operator when the environment
/// names none (a cron job, `env -i`): its login name from the user
/// database, else `uid N`; never a made-up "unknown" on Unix.
pub fn name() -> String {
    let (uid, name) = ids();
    match (name, uid) {
        (Some(name), _) => name,
        (None, Some(uid)) => format!("uid {uid}"),
        (None, None) => "unknown".to_owned(),
    }
}

/// The OS user running gbdfl as the machine says, for the audit trail and
/// the lookups beside the declared operator: `NAME (uid N)`, or `uid N`
/// when the user database has no name for the uid. Asked of the OS once per
/// process, never of the environment (`$USER` is whatever the caller set).
pub fn described() -> &'static str {
    static OS_USER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    OS_USER.get_or_init(|| match ids() {
        (Some(uid), Some(name)) => format!("{name} (uid {uid})"),
        (Some(uid), None) => format!("uid {uid}"),
        (None, Some(name)) => name,
        (None, None) => "unknown".to_owned(),
    })
}

/// The real uid of the process and its login name from the user database
/// (`None` when it has none usable); no uid off Unix.
fn ids() -> (Option<u32>, Option<String>) {
    #[cfg(unix)]
    {
        let uid = nix::unistd::getuid();
        // The user database's entry (getpwuid_r); an error or no entry is
        // "no name", as is a name that is blank or holds control characters.
        let name = nix::unistd::User::from_uid(uid)
            .ok()
            .flatten()
            .map(|user| user.name)
            .filter(|name| !name.trim().is_empty() && !name.chars().any(char::is_control));
        (Some(uid.as_raw()), name)
    }
    #[cfg(not(unix))]
    {
        (None, None)
    }
}
