//! The config file: named accounts, so that `imapfs work ~/mail` mounts the account
//! `[accounts.work]` of `$XDG_CONFIG_HOME/imapfs/config.toml` (`~/.config/imapfs/...`).
//!
//! An account holds `source` and any option under its `-o` name (`password_command`,
//! `ca_file`, `cache_size`...). Those options are not a second declaration: each becomes the
//! long option it names (`cli::option_arg`) and is parsed in front of the command line, so
//! the command line wins. A `password` is accepted only from a file that its owner alone
//! can read.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::cli::{self, CliError, Options};

/// The command line, with the account it named (if any) applied.
#[derive(Debug)]
pub struct Invocation {
    pub options: Options,
    /// A `password` from the config file; the caller hands it on and wipes it.
    pub password: Option<String>,
}

/// Why the command line and the config file together could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Cli(#[from] CliError),
    #[error("invalid SOURCE '{name}': not an imaps:// or imap:// URL, and {why}")]
    NoSuchAccount { name: String, why: String },
    #[error("{file}: {reason}")]
    File { file: String, reason: String },
}

/// The config file's place: `$XDG_CONFIG_HOME/imapfs/config.toml`, else
/// `~/.config/imapfs/config.toml` (the home directory from `$HOME`, else the password
/// database, so that it is found under `mount`, which clears `$HOME`).
pub fn config_path() -> Option<PathBuf> {
    dirs::config_dir().map(|d| d.join("imapfs").join("config.toml"))
}

/// Parses the command line (`args` starting with the program name), applying the account of
/// the config file that SOURCE names when SOURCE is not a URL.
pub fn parse_command_line(args: Vec<OsString>) -> Result<Invocation, ConfigError> {
    let Some(at) = cli::source_position(&args) else {
        return Ok(Invocation {
            options: cli::parse_args(args)?,
            password: None,
        });
    };
    let given = args[at].to_string_lossy().into_owned();
    if given.contains("://") || !is_account_name(&given) {
        return Ok(Invocation {
            options: cli::parse_args(args)?,
            password: None,
        });
    }
    let path = config_path().ok_or_else(|| ConfigError::NoSuchAccount {
        name: given.clone(),
        why: "there is no home directory to find a config file in".into(),
    })?;
    let account = read_account(&path, &given)?;
    let mut args = args;
    args[at] = OsString::from(&account.source);
    let mut options = cli::parse_args_over(args, account.defaults)?;
    options.mount_name = given;
    Ok(Invocation {
        options,
        password: account.password,
    })
}

/// A name that can only be an account: letters, digits, `-`, `_`, `.`, `@`.
fn is_account_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('-')
        && s.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
}

/// One account of the file, ready to parse.
struct Account {
    source: String,
    /// Its options as long options.
    defaults: Vec<OsString>,
    password: Option<String>,
}

/// The file's shape: `[accounts.NAME]` tables and nothing else.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    accounts: BTreeMap<String, toml::Table>,
}

/// Reads `name`'s account from the file at `path`.
fn read_account(path: &Path, name: &str) -> Result<Account, ConfigError> {
    let shown = path.display().to_string();
    let file_error = |reason: String| ConfigError::File {
        file: shown.clone(),
        reason,
    };
    let mut text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ConfigError::NoSuchAccount {
                name: name.to_owned(),
                why: format!("there is no config file {shown} to hold such an account"),
            })
        }
        Err(e) => return Err(file_error(format!("cannot read it: {e}"))),
    };
    let parsed: Result<File, _> = toml::from_str(&text);
    wipe(&mut text);
    let file = parsed.map_err(|e| file_error(e.message().to_owned()))?;
    let Some(table) = file.accounts.get(name) else {
        let names: Vec<&str> = file.accounts.keys().map(String::as_str).collect();
        let known = if names.is_empty() {
            "it has none".to_owned()
        } else {
            format!("it has {}", names.join(", "))
        };
        return Err(ConfigError::NoSuchAccount {
            name: name.to_owned(),
            why: format!("{shown} has no [accounts.{name}] ({known})"),
        });
    };
    let account_error = |key: &str, reason: String| ConfigError::File {
        file: shown.clone(),
        reason: format!("[accounts.{name}] {key}: {reason}"),
    };
    let mut source = None;
    let mut password = None;
    let mut defaults = Vec::new();
    for (key, value) in table {
        match (key.as_str(), value) {
            ("source", toml::Value::String(s)) => source = Some(s.clone()),
            ("source", _) => return Err(account_error(key, "must be a string".into())),
            ("password", toml::Value::String(p)) => {
                check_private(path, name)?;
                password = Some(p.clone());
            }
            ("password", _) => return Err(account_error(key, "must be a string".into())),
            _ => {
                let one = |value: Option<&str>| {
                    cli::option_arg(key, value).map_err(|e| account_error(key, reason_of(e)))
                };
                match value {
                    toml::Value::Boolean(true) => defaults.push(one(None)?),
                    toml::Value::Boolean(false) => {}
                    toml::Value::String(s) => defaults.push(one(Some(s))?),
                    toml::Value::Integer(n) if key == "verbose" => {
                        for _ in 0..(*n).clamp(0, 3) {
                            defaults.push(one(None)?);
                        }
                    }
                    toml::Value::Integer(n) => defaults.push(one(Some(&n.to_string()))?),
                    _ => {
                        return Err(account_error(
                            key,
                            "must be a string, a whole number or true/false".into(),
                        ))
                    }
                }
            }
        }
    }
    if password.is_some() && table.contains_key("password_command") {
        return Err(account_error(
            "password",
            "give either password or password_command, not both".into(),
        ));
    }
    let source = source.ok_or_else(|| {
        account_error(
            "source",
            "is missing (source = \"imaps://USER@HOST\")".into(),
        )
    })?;
    if !source.contains("://") {
        return Err(account_error(
            "source",
            "must be an imaps:// or imap:// URL".into(),
        ));
    }
    Ok(Account {
        source,
        defaults,
        password,
    })
}

/// What an option error says, without the `-o` framing the config file does not use.
fn reason_of(e: CliError) -> String {
    match e {
        CliError::MountOption { reason, .. } => reason,
        CliError::InvalidValue { value, reason, .. } => {
            format!("invalid value '{value}': {reason}")
        }
        other => other.to_string(),
    }
}

/// A password may sit only in a file that no one but its owner can read.
fn check_private(path: &Path, name: &str) -> Result<(), ConfigError> {
    let shown = path.display().to_string();
    let mode = std::fs::metadata(path)
        .map_err(|e| ConfigError::File {
            file: shown.clone(),
            reason: e.to_string(),
        })?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(ConfigError::File {
            file: shown.clone(),
            reason: format!(
                "[accounts.{name}] has a password, but the file's mode is {mode:04o}: others can \
                 read it. Run `chmod 600 {shown}`, or use password_command instead"
            ),
        });
    }
    Ok(())
}

/// Overwrites a string that held a password.
pub fn wipe(s: &mut str) {
    // SAFETY: zero bytes are valid UTF-8.
    unsafe { s.as_bytes_mut() }.fill(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str, mode: u32) -> PathBuf {
        let path = dir.join("config.toml");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    const WORK: &str = r#"
[accounts.work]
source = "imaps://alice@imap.example.com"
password_command = "pass show mail, work"
cache_size = "1G"
connections = 2
read_only = true
allow_other = false
verbose = 2

[accounts.home]
source = "imap://bob@example.org"
"#;

    #[test]
    fn an_account_becomes_its_source_and_long_options() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), WORK, 0o644);
        let account = read_account(&path, "work").unwrap();
        assert_eq!(account.source, "imaps://alice@imap.example.com");
        let defaults: Vec<String> = account
            .defaults
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            defaults,
            [
                "--cache-size=1G",
                "--connections=2",
                "--password-command=pass show mail, work",
                "--read-only",
                "--verbose",
                "--verbose"
            ]
        );
        assert!(account.password.is_none());
        let args = [
            "imapfs",
            "imaps://alice@imap.example.com",
            "/m",
            "--connections",
            "3",
        ]
        .map(OsString::from)
        .to_vec();
        let o = cli::parse_args_over(args, account.defaults).unwrap();
        assert_eq!(
            (o.connections, o.cache_size, o.read_only),
            (3, 1 << 30, true)
        );
        assert_eq!(o.password_command.as_deref(), Some("pass show mail, work"));
    }

    #[test]
    fn unknown_accounts_and_keys_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), WORK, 0o644);
        let e = read_account(&path, "play").err().unwrap().to_string();
        assert!(
            e.contains("'play'")
                && e.contains("has no [accounts.play]")
                && e.contains("home, work"),
            "{e}"
        );
        let missing = dir.path().join("none.toml");
        let e = read_account(&missing, "work").err().unwrap().to_string();
        assert!(
            e.contains("no config file") && e.contains("none.toml"),
            "{e}"
        );
        for (text, needle) in [
            (
                "[accounts.work]\nsource = \"imaps://a@b\"\ncache_sise = \"1G\"\n",
                "cache_sise: unknown mount option",
            ),
            (
                "[accounts.work]\nsource = \"imaps://a@b\"\ntimeout = 0\n",
                "timeout: invalid value '0'",
            ),
            (
                "[accounts.work]\nsource = \"imaps://a@b\"\nforeground = \"yes\"\n",
                "foreground: takes no value",
            ),
            (
                "[accounts.work]\npassword_command = \"x\"\n",
                "source: is missing",
            ),
            (
                "[accounts.work]\nsource = \"work\"\n",
                "source: must be an imaps://",
            ),
            ("[account.work]\n", "unknown field"),
            ("[accounts.work\n", "config.toml"),
        ] {
            let path = write(dir.path(), text, 0o600);
            let e = read_account(&path, "work").err().unwrap().to_string();
            assert!(
                e.contains(needle) && e.contains("config.toml"),
                "{text:?}: {e}"
            );
        }
    }

    #[test]
    fn a_password_needs_a_file_only_its_owner_can_read() {
        let dir = tempfile::tempdir().unwrap();
        let text = "[accounts.work]\nsource = \"imaps://a@b\"\npassword = \"hunter2\"\n";
        for mode in [0o644, 0o640, 0o604, 0o660] {
            let path = write(dir.path(), text, mode);
            let e = read_account(&path, "work").err().unwrap().to_string();
            assert!(
                e.contains(&format!("{mode:04o}"))
                    && e.contains("config.toml")
                    && e.contains("chmod 600"),
                "{e}"
            );
            assert!(!e.contains("hunter2"), "{e}");
        }
        let path = write(dir.path(), text, 0o600);
        let account = read_account(&path, "work").unwrap();
        assert_eq!(account.password.as_deref(), Some("hunter2"));
        let both = format!("{text}password_command = \"x\"\n");
        let path = write(dir.path(), &both, 0o600);
        let e = read_account(&path, "work").err().unwrap().to_string();
        assert!(e.contains("not both"), "{e}");
    }

    #[test]
    fn account_names_are_told_from_urls() {
        assert!(is_account_name("work"));
        assert!(is_account_name("alice@work.example"));
        assert!(!is_account_name("imaps://a@b"));
        assert!(!is_account_name("-f"));
        assert!(!is_account_name("a b"));
        assert!(!is_account_name(""));
    }
}
