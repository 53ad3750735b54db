//! Credentials from the Docker client configuration,
//! `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`.
//!
//! A registry's credentials are looked up the way the Docker client does:
//! its `credHelpers` entry names a helper, else `credsStore` does, and the
//! helper (`docker-credential-NAME get`) is asked; without a helper, or
//! when the helper holds nothing for the registry, the registry's `auths`
//! entry is used (`auth`, `username`/`password`, or `identitytoken`).
//!
//! The file is read once, up front; each registry's credentials are looked
//! up only when that registry asks for them, once per process, and the
//! answer (credentials, none, or the failure) is kept and shared by every
//! thread, so parallel downloads never run a helper twice. Secrets never
//! appear in `Debug` output, logs or error messages.

mod config;
mod helper;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use config::Config;

/// How long a credential helper may take unless told otherwise.
pub const DEFAULT_HELPER_TIMEOUT: Duration = Duration::from_secs(30);
/// The environment variable that sets the helper timeout, in seconds.
pub const HELPER_TIMEOUT_VAR: &str = "LKCACHE_CREDENTIAL_HELPER_TIMEOUT_SECS";

/// A user name and password (or personal access token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct BasicAuth {
    /// The user name.
    pub username: String,
    /// The password or personal access token.
    pub password: String,
}

impl fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicAuth")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// What the Docker configuration holds for one registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// A user name and password: sent as basic auth, to the registry or
    /// to its token server.
    Basic(BasicAuth),
    /// An identity token: an OAuth2 refresh token, traded at the token
    /// server for access tokens.
    IdentityToken(String),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Basic(auth) => f.debug_tuple("Basic").field(auth).finish(),
            Credential::IdentityToken(_) => f.write_str("IdentityToken(<redacted>)"),
        }
    }
}

/// Which setting of the configuration named a credential helper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelperSetting {
    /// `credHelpers`, a helper for one registry.
    CredHelpers,
    /// `credsStore`, the helper for every registry without its own.
    CredsStore,
}

impl fmt::Display for HelperSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HelperSetting::CredHelpers => "credHelpers",
            HelperSetting::CredsStore => "credsStore",
        })
    }
}

/// A credential helper, and where the configuration names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialHelper {
    /// The program: `docker-credential-NAME`.
    pub program: String,
    /// The setting that names it.
    pub setting: HelperSetting,
    /// The configuration file.
    pub config: PathBuf,
}

impl fmt::Display for CredentialHelper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` (named by `{}` in `{}`)",
            self.program,
            self.setting,
            self.config.display()
        )
    }
}

/// Why credentials cannot be had. Cloneable, so that a failed lookup is
/// remembered and reported to every request that needs it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CredentialError {
    /// The file exists but cannot be read.
    #[error("cannot read the Docker configuration `{}`", path.display())]
    Read {
        /// The configuration file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The file is not valid JSON of the expected shape.
    #[error(
        "the Docker configuration `{}` is not valid JSON; fix it or point DOCKER_CONFIG elsewhere",
        path.display()
    )]
    Parse {
        /// The configuration file.
        path: PathBuf,
        /// What the JSON parser found.
        #[source]
        source: Arc<serde_json::Error>,
    },
    /// An `auth` value is not base64 of `user:password`.
    #[error(
        "the `auths` entry for `{registry}` in `{}` is not base64 of `user:password`; \
         log in again to rewrite it", path.display()
    )]
    BadAuth {
        /// The key of the entry.
        registry: String,
        /// The configuration file.
        path: PathBuf,
    },
    /// The helper timeout in the environment is not a number of seconds.
    #[error("{HELPER_TIMEOUT_VAR} is `{value}`, expected a whole number of seconds above 0")]
    BadTimeout {
        /// The value found.
        value: String,
    },
    /// The helper is not installed.
    #[error(
        "the credential helper {helper} for `{registry}` is not on PATH; install it, \
         or remove the `{}` entry from the Docker configuration", helper.setting
    )]
    HelperMissing {
        /// The helper.
        helper: Box<CredentialHelper>,
        /// The registry whose credentials were wanted.
        registry: String,
    },
    /// The helper cannot be started.
    #[error("cannot run the credential helper {helper} for `{registry}`")]
    HelperStart {
        /// The helper.
        helper: Box<CredentialHelper>,
        /// The registry whose credentials were wanted.
        registry: String,
        /// The operating system's error.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The helper failed.
    #[error(
        "the credential helper {helper} failed for `{registry}` ({status}): {message}; \
         try `printf '{server_url}' | {} get` to see why", helper.program
    )]
    HelperFailed {
        /// The helper.
        helper: Box<CredentialHelper>,
        /// The registry whose credentials were wanted.
        registry: String,
        /// The server URL the helper was asked for.
        server_url: String,
        /// How it exited.
        status: String,
        /// What it printed, unless that looked like credentials.
        message: String,
    },
    /// The helper did not answer in time and was killed.
    #[error(
        "the credential helper {helper} did not answer for `{registry}` within {} s and was \
         stopped; if it waits for something (an unlock, a prompt, the network), see to that, \
         or set {HELPER_TIMEOUT_VAR} to wait longer", timeout.as_secs_f64()
    )]
    HelperTimedOut {
        /// The helper.
        helper: Box<CredentialHelper>,
        /// The registry whose credentials were wanted.
        registry: String,
        /// How long it was given.
        timeout: Duration,
    },
    /// The helper succeeded but printed something other than credentials.
    #[error(
        "the credential helper {helper} answered for `{registry}` with something other than \
         credentials JSON"
    )]
    HelperAnswer {
        /// The helper.
        helper: Box<CredentialHelper>,
        /// The registry whose credentials were wanted.
        registry: String,
        /// What the JSON parser found.
        #[source]
        source: Arc<serde_json::Error>,
    },
}

/// One registry's lookup, done once.
type Lookup = Result<Option<Credential>, CredentialError>;

/// The credentials of a Docker configuration, looked up per registry on
/// demand; clones share what was looked up.
#[derive(Clone)]
pub struct Credentials {
    config: Arc<Config>,
    helper_timeout: Duration,
    lookups: Arc<Mutex<HashMap<String, Arc<OnceLock<Lookup>>>>>,
}

impl Default for Credentials {
    fn default() -> Credentials {
        Credentials::with_config(Config::default())
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("config", &self.config)
            .field("helper_timeout", &self.helper_timeout)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Loads the Docker configuration the environment names
    /// (`DOCKER_CONFIG`, else `~/.docker`), with the helper timeout of
    /// `LKCACHE_CREDENTIAL_HELPER_TIMEOUT_SECS`; a missing file means no
    /// credentials.
    pub fn from_env() -> Result<Credentials, CredentialError> {
        let credentials = match config_path() {
            Some(path) => Credentials::from_file(&path)?,
            None => Credentials::default(),
        };
        match helper_timeout_from_env()? {
            Some(timeout) => Ok(credentials.with_helper_timeout(timeout)),
            None => Ok(credentials),
        }
    }

    /// Loads the Docker configuration at `path`; a missing file means no
    /// credentials.
    pub fn from_file(path: &Path) -> Result<Credentials, CredentialError> {
        Ok(Credentials::with_config(Config::load(path)?))
    }

    /// Returns these credentials with another time limit for helpers
    /// (30 s by default).
    pub fn with_helper_timeout(mut self, timeout: Duration) -> Credentials {
        self.helper_timeout = timeout;
        self
    }

    fn with_config(config: Config) -> Credentials {
        Credentials {
            config: Arc::new(config),
            helper_timeout: DEFAULT_HELPER_TIMEOUT,
            lookups: Arc::default(),
        }
    }

    /// Returns the credentials for the registry `domain` (as a reference
    /// spells it: `docker.io`, `host:5000`), asking its helper the first
    /// time; later calls, from any thread, get the same answer.
    pub fn for_registry(&self, domain: &str) -> Result<Option<Credential>, CredentialError> {
        let host = config::normalize_host(domain);
        let cell = {
            let mut lookups = self.lookups.lock().expect("lock poisoned");
            Arc::clone(lookups.entry(host.clone()).or_default())
        };
        // Threads asking for the same registry wait here for one lookup.
        cell.get_or_init(|| self.look_up(&host)).clone()
    }

    /// Looks the credentials of `host` up: its helper first, then the
    /// `auths` entry.
    fn look_up(&self, host: &str) -> Lookup {
        let found = match self.config.helper_for(host) {
            Some(helper) => {
                let server_url = config::server_url(host);
                match helper::get(&helper, host, &server_url, self.helper_timeout)? {
                    Some(credential) => Some((credential, helper.program)),
                    None => self.inline(host)?,
                }
            }
            None => self.inline(host)?,
        };
        let Some((credential, source)) = found else {
            tracing::debug!(
                registry = host,
                "no credentials in the Docker configuration"
            );
            return Ok(None);
        };
        let kind = match &credential {
            Credential::Basic(auth) => format!("user `{}`", auth.username),
            Credential::IdentityToken(_) => "an identity token".to_string(),
        };
        tracing::debug!(registry = host, "credentials from {source}: {kind}");
        Ok(Some(credential))
    }

    fn inline(&self, host: &str) -> Result<Option<(Credential, String)>, CredentialError> {
        let found = self.config.inline(host)?;
        Ok(found.map(|credential| (credential, "`auths`".to_string())))
    }
}

fn config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
    Some(PathBuf::from(home).join(".docker").join("config.json"))
}

fn helper_timeout_from_env() -> Result<Option<Duration>, CredentialError> {
    let Some(value) = std::env::var_os(HELPER_TIMEOUT_VAR) else {
        return Ok(None);
    };
    let value = value.to_string_lossy();
    parse_timeout(&value).map(Some)
}

fn parse_timeout(value: &str) -> Result<Duration, CredentialError> {
    match value.trim().parse::<u64>() {
        Ok(secs) if secs > 0 => Ok(Duration::from_secs(secs)),
        _ => Err(CredentialError::BadTimeout {
            value: value.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn shares_one_lookup_between_threads() {
        let counter = Arc::new(AtomicUsize::new(0));
        let credentials = Credentials::default();
        std::thread::scope(|scope| {
            for _ in 0..8 {
                let counter = Arc::clone(&counter);
                let credentials = credentials.clone();
                scope.spawn(move || {
                    assert_eq!(credentials.for_registry("a.example").unwrap(), None);
                    counter.fetch_add(1, Ordering::Relaxed);
                });
            }
        });
        assert_eq!(counter.load(Ordering::Relaxed), 8);
        assert_eq!(credentials.lookups.lock().unwrap().len(), 1);
    }

    #[test]
    fn parses_the_helper_timeout() {
        let cases = [
            ("5", Some(Duration::from_secs(5))),
            (" 30 ", Some(Duration::from_secs(30))),
            ("0", None),
            ("1.5", None),
            ("soon", None),
        ];
        for (value, expected) in cases {
            assert_eq!(parse_timeout(value).ok(), expected, "{value}");
        }
    }

    #[test]
    fn never_shows_secrets_in_debug_output() {
        let basic = Credential::Basic(BasicAuth {
            username: "alice".into(),
            password: "s3cret".into(),
        });
        let token = Credential::IdentityToken("refresh-s3cret".into());
        for shown in [format!("{basic:?}"), format!("{token:?}")] {
            assert!(!shown.contains("s3cret"), "{shown}");
        }
        assert!(format!("{basic:?}").contains("alice"));
    }
}
