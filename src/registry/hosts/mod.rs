//! How lkcache reaches a registry: which hosts it asks (mirrors first, then
//! the upstream), over which scheme, with which TLS setup and through
//! which proxy.
//!
//! Per registry, a host directory in containerd's `certs.d` layout says so:
//! `DIR/HOST[:PORT]/hosts.toml` (read by `file.rs`), plus Docker's certificate
//! files in the same directory. The directories searched are
//! `$LKCACHE_HOSTS_DIR` if set, else `~/.config/lkcache/certs.d`; then
//! `/etc/containerd/certs.d` and `/etc/docker/certs.d`. In each, the
//! registry's own directory is looked for as `HOST_PORT_` and then
//! `HOST:PORT` (containerd's two spellings of a port); the first directory
//! that has it wins. Only when none has it does `_default`, in the same
//! order, apply.
//!
//! Mirrors from the command line come first, then the file's hosts in its
//! order, then the upstream: the file's `server`, or the registry itself.
//! A manifest by tag is asked only of hosts with the `resolve` capability,
//! a manifest by digest and a blob only of hosts with `pull`; pushes and
//! questions about what the registry serves now go to the upstream alone.
//!
//! The scheme of a host is the one its URL names. Without one (a registry
//! without `server`, a mirror given as `host:port`), plain HTTP is spoken
//! to registries named insecure and to loopback hosts, unless the host
//! directory configures TLS for the upstream; HTTPS to every other host.

mod connector;
mod file;
mod proxy;
mod tls;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use ureq::http::Uri;

use crate::reference::Reference;

pub(crate) use connector::Connector;
pub use proxy::Proxies;
pub(crate) use tls::{TlsSetup, typed_tls_error};

/// The environment variable naming the first host directory to search.
pub const HOSTS_DIR_VAR: &str = "LKCACHE_HOSTS_DIR";
/// The directory that applies to registries without one of their own.
const DEFAULT_HOST_DIR: &str = "_default";
/// The registry a `--mirror` without `REGISTRY=` mirrors, as Docker's
/// `registry-mirrors` do.
const DOCKER_HUB: &str = "docker.io";

/// What a host may be asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Capability {
    /// Content by digest: blobs, and manifests by digest.
    Pull,
    /// Turning a tag into a manifest.
    Resolve,
}

/// The capabilities of a host that matter to lkcache: containerd's
/// `pull` and `resolve` (its `push` is accepted and has no effect, since
/// pushes go to the upstream alone).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Capabilities {
    pub pull: bool,
    pub resolve: bool,
}

impl Capabilities {
    /// Every capability: a host's default.
    pub(crate) const ALL: Capabilities = Capabilities {
        pull: true,
        resolve: true,
    };

    fn allows(self, capability: Capability) -> bool {
        match capability {
            Capability::Pull => self.pull,
            Capability::Resolve => self.resolve,
        }
    }
}

/// Where host configuration comes from: host directories, and mirrors
/// given on the command line.
#[derive(Debug, Clone, Default)]
pub struct Hosts {
    dirs: Vec<PathBuf>,
    mirrors: Vec<Mirror>,
}

impl Hosts {
    /// Reads host directories from `dirs`, in order.
    pub fn new(dirs: Vec<PathBuf>) -> Hosts {
        Hosts {
            dirs,
            mirrors: Vec::new(),
        }
    }

    /// Reads the default host directories (see the module's docs).
    pub fn from_env() -> Hosts {
        Hosts::new(default_dirs())
    }

    /// Tries `mirrors` first, before those the host directories name.
    pub fn with_mirrors(mut self, mirrors: Vec<Mirror>) -> Hosts {
        self.mirrors = mirrors;
        self
    }

    /// Returns the directories searched, in order.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Works out the hosts to ask for `reference`'s registry.
    pub(crate) fn route(
        &self,
        reference: &Reference,
        insecure: &[String],
    ) -> Result<Route, HostsError> {
        let domain = reference.domain();
        let host_dir = match self.find_dir(domain) {
            Some(dir) => Some(file::load(&dir)?),
            None => None,
        };
        if let Some(dir) = &host_dir {
            tracing::debug!(
                registry = domain,
                "host configuration from {}",
                dir.path.display()
            );
        }
        let server = host_dir
            .as_ref()
            .map(|d| d.server.clone())
            .unwrap_or(file::HostEntry {
                capabilities: Capabilities::ALL,
                ..file::HostEntry::default()
            });
        let upstream = upstream_endpoint(reference, &server, insecure)?;

        let mut mirrors = Vec::new();
        for mirror in self.mirrors.iter().filter(|m| m.registry == domain) {
            mirrors.push(self.command_line_mirror(mirror, domain, insecure)?);
        }
        for entry in host_dir.iter().flat_map(|d| &d.hosts) {
            mirrors.push(mirror_endpoint(entry, domain, insecure)?);
        }
        mirrors.retain(|mirror| !mirror.is_same_host(&upstream));
        Ok(Route { mirrors, upstream })
    }

    /// Finds the host directory of `domain`, or the default one.
    fn find_dir(&self, domain: &str) -> Option<PathBuf> {
        let specific = dir_names(domain);
        let found = self.dirs.iter().find_map(|dir| {
            specific
                .iter()
                .map(|name| dir.join(name))
                .find(|path| path.is_dir())
        });
        found.or_else(|| {
            self.dirs
                .iter()
                .map(|dir| dir.join(DEFAULT_HOST_DIR))
                .find(|path| path.is_dir())
        })
    }

    /// Turns a mirror from the command line into an endpoint, with the TLS
    /// setup of its own host directory if it has one.
    fn command_line_mirror(
        &self,
        mirror: &Mirror,
        domain: &str,
        insecure: &[String],
    ) -> Result<Endpoint, HostsError> {
        let url = parse_url(&mirror.url).map_err(|detail| HostsError::Mirror {
            input: mirror.url.clone(),
            detail,
        })?;
        let own_dir = dir_names(&url.authority).into_iter().find_map(|name| {
            self.dirs
                .iter()
                .map(|dir| dir.join(&name))
                .find(|path| path.is_dir())
        });
        let mut entry = match own_dir {
            Some(dir) => file::load(&dir)?.server,
            None => file::HostEntry::default(),
        };
        entry.url = Some(mirror.url.clone());
        entry.capabilities = Capabilities::ALL;
        entry.override_path = false;
        mirror_endpoint(&entry, domain, insecure)
    }
}

/// The host directory in the home directory, unless `$LKCACHE_HOSTS_DIR`
/// names another.
const HOME_DIR: &str = ".config/lkcache/certs.d";

/// The host directories of containerd and Docker, searched after lkcache's.
const SYSTEM_DIRS: [&str; 2] = ["/etc/containerd/certs.d", "/etc/docker/certs.d"];

/// Returns the default host directories, in the order they are searched.
pub fn default_dirs() -> Vec<PathBuf> {
    let first = std::env::var_os(HOSTS_DIR_VAR)
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|home| !home.is_empty())
                .map(|home| Path::new(&home).join(HOME_DIR))
        });
    first
        .into_iter()
        .chain(SYSTEM_DIRS.map(PathBuf::from))
        .collect()
}

/// Names the default host directories for a message, in search order.
pub(crate) fn describe_default_dirs() -> String {
    format!(
        "`${HOSTS_DIR_VAR}` (else `~/{HOME_DIR}`), `{}` or `{}`",
        SYSTEM_DIRS[0], SYSTEM_DIRS[1]
    )
}

/// Returns the names a registry's directory may have: containerd's
/// `HOST_PORT_` first, then `HOST:PORT`.
fn dir_names(authority: &str) -> Vec<String> {
    match authority.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            vec![format!("{host}_{port}_"), authority.to_string()]
        }
        _ => vec![authority.to_string()],
    }
}

/// A mirror given on the command line as `[REGISTRY=]URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    /// The registry mirrored, as references name it (`docker.io`).
    pub registry: String,
    /// The mirror's URL.
    pub url: String,
}

impl FromStr for Mirror {
    type Err = HostsError;

    /// Parses `[REGISTRY=]URL`; without `REGISTRY=`, the mirror is Docker
    /// Hub's.
    fn from_str(input: &str) -> Result<Mirror, HostsError> {
        let invalid = |detail: &str| HostsError::Mirror {
            input: input.to_string(),
            detail: detail.to_string(),
        };
        let (registry, url) = match input.split_once('=') {
            Some((registry, url)) if !registry.contains('/') => (registry.trim(), url.trim()),
            _ => (DOCKER_HUB, input.trim()),
        };
        if registry.is_empty() || registry.contains("://") {
            return Err(invalid(
                "the registry before `=` is a host[:port] such as `docker.io`",
            ));
        }
        parse_url(url).map_err(|detail| invalid(&detail))?;
        Ok(Mirror {
            registry: canonical_registry(registry),
            url: url.to_string(),
        })
    }
}

/// Spells Docker Hub as references do.
fn canonical_registry(registry: &str) -> String {
    let registry = registry.to_ascii_lowercase();
    match registry.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            DOCKER_HUB.to_string()
        }
        _ => registry,
    }
}

/// The scheme of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Scheme {
    Http,
    Https,
}

/// One host to ask, with how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// The host as messages name it and credentials are looked up for:
    /// the registry's own name for the registry at its usual host, else
    /// `host[:port]`.
    pub name: String,
    pub scheme: Scheme,
    /// `host[:port]`.
    pub authority: String,
    /// The path of the API root, `/v2` unless `override_path` says.
    pub api_root: String,
    /// For a mirror, the registry it stands in for, sent as containerd
    /// does in an `ns` query parameter.
    pub namespace: Option<String>,
    pub capabilities: Capabilities,
    pub tls: TlsSetup,
    pub headers: Vec<(String, String)>,
    pub connect_timeout: Option<Duration>,
    /// A proxy that overrides the environment's.
    pub proxy: Option<String>,
}

impl Endpoint {
    /// Returns the URL of `target`: an API path (`/v2/...`), mapped onto
    /// this host's API root, or an absolute URL the registry handed out.
    pub(crate) fn url(&self, target: &str) -> String {
        if target.starts_with("http://") || target.starts_with("https://") {
            return target.to_string();
        }
        let rest = target.strip_prefix("/v2").unwrap_or(target);
        let mut url = format!("{}{}{rest}", self.base_url(), self.api_root);
        if let Some(namespace) = &self.namespace {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str("ns=");
            url.push_str(&namespace.replace('[', "%5B").replace(']', "%5D"));
        }
        url
    }

    /// Returns `scheme://host[:port]`.
    pub(crate) fn base_url(&self) -> String {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        format!("{scheme}://{}", self.authority)
    }

    /// Tells whether this is a mirror, not the upstream.
    pub(crate) fn is_mirror(&self) -> bool {
        self.namespace.is_some()
    }

    fn is_same_host(&self, other: &Endpoint) -> bool {
        self.scheme == other.scheme
            && self.authority == other.authority
            && self.api_root == other.api_root
    }
}

/// The hosts to ask for one registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Route {
    /// Mirrors, in the order to try them.
    pub mirrors: Vec<Endpoint>,
    /// The registry itself, or the `server` that stands for it.
    pub upstream: Endpoint,
}

impl Route {
    /// Returns the mirrors that may serve a request needing `capability`.
    pub(crate) fn mirrors_for(&self, capability: Capability) -> impl Iterator<Item = &Endpoint> {
        self.mirrors
            .iter()
            .filter(move |mirror| mirror.capabilities.allows(capability))
    }
}

/// A URL of a host directory or the command line, taken apart.
struct HostUrl {
    scheme: Option<Scheme>,
    authority: String,
    path: String,
}

/// Parses `[SCHEME://]HOST[:PORT][/PATH]`.
fn parse_url(url: &str) -> Result<HostUrl, String> {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => match scheme.to_ascii_lowercase().as_str() {
            "http" => (Some(Scheme::Http), rest),
            "https" => (Some(Scheme::Https), rest),
            _ => return Err(format!("the scheme `{scheme}` is neither http nor https")),
        },
        None => (None, url),
    };
    let uri: Uri = format!("https://{rest}")
        .parse()
        .map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    let authority = uri
        .authority()
        .filter(|a| !a.host().is_empty())
        .ok_or_else(|| format!("`{url}` names no host"))?;
    if authority.as_str().contains('@') || uri.query().is_some() {
        return Err(format!(
            "`{url}` may not hold a user name or a query; credentials come from the Docker configuration"
        ));
    }
    Ok(HostUrl {
        scheme,
        authority: authority.as_str().to_ascii_lowercase(),
        path: uri.path().trim_end_matches('/').to_string(),
    })
}

/// Returns the API root for a URL path, as containerd does: `/v2`
/// appended unless the path ends in it or `override_path` is set.
fn api_root(path: &str, override_path: bool) -> String {
    if override_path || path.ends_with("/v2") {
        path.to_string()
    } else {
        format!("{path}/v2")
    }
}

/// Tells whether `authority` is on loopback, by the rule references use.
fn is_loopback(authority: &str) -> bool {
    format!("{authority}/probe")
        .parse::<Reference>()
        .is_ok_and(|reference| reference.is_loopback())
}

/// Returns the scheme for a host whose URL names none.
fn default_scheme(authority: &str, names: &[&str], insecure: &[String], has_tls: bool) -> Scheme {
    let is_insecure = insecure
        .iter()
        .any(|registry| names.iter().any(|name| registry.eq_ignore_ascii_case(name)));
    if is_insecure || (!has_tls && is_loopback(authority)) {
        Scheme::Http
    } else {
        Scheme::Https
    }
}

fn tls_setup(entry: &file::HostEntry) -> TlsSetup {
    if entry.client.len() > 1 {
        tracing::debug!("more than one client certificate configured; using the first");
    }
    TlsSetup {
        ca: entry.ca.clone(),
        client: entry.client.first().cloned(),
        skip_verify: entry.skip_verify.unwrap_or(false),
    }
}

/// Builds the upstream endpoint of `reference`'s registry.
fn upstream_endpoint(
    reference: &Reference,
    server: &file::HostEntry,
    insecure: &[String],
) -> Result<Endpoint, HostsError> {
    let domain = reference.domain();
    let url = match &server.url {
        Some(url) => parse_url(url).map_err(|detail| HostsError::Server {
            registry: domain.to_string(),
            detail,
        })?,
        None => HostUrl {
            scheme: None,
            authority: reference.registry_host().to_string(),
            path: String::new(),
        },
    };
    let names = [domain, url.authority.as_str()];
    let scheme = url.scheme.unwrap_or_else(|| {
        default_scheme(&url.authority, &names, insecure, server.has_tls_material())
    });
    let name = if url.authority == reference.registry_host() {
        domain.to_string()
    } else {
        url.authority.clone()
    };
    Ok(Endpoint {
        name,
        scheme,
        api_root: api_root(&url.path, server.override_path),
        authority: url.authority,
        namespace: None,
        capabilities: server.capabilities,
        tls: tls_setup(server),
        headers: server.headers.clone(),
        connect_timeout: server.dial_timeout,
        proxy: server.proxy.clone(),
    })
}

/// Builds the endpoint of a mirror of `domain`.
fn mirror_endpoint(
    entry: &file::HostEntry,
    domain: &str,
    insecure: &[String],
) -> Result<Endpoint, HostsError> {
    let written = entry.url.clone().unwrap_or_default();
    let url = parse_url(&written).map_err(|detail| HostsError::Mirror {
        input: written.clone(),
        detail,
    })?;
    let scheme = url.scheme.unwrap_or_else(|| {
        default_scheme(
            &url.authority,
            &[&url.authority],
            insecure,
            entry.has_tls_material(),
        )
    });
    Ok(Endpoint {
        name: url.authority.clone(),
        scheme,
        api_root: api_root(&url.path, entry.override_path),
        authority: url.authority,
        namespace: Some(domain.to_string()),
        capabilities: entry.capabilities,
        tls: tls_setup(entry),
        headers: entry.headers.clone(),
        connect_timeout: entry.dial_timeout,
        proxy: entry.proxy.clone(),
    })
}

/// What is wrong with the host configuration.
#[derive(Debug, thiserror::Error)]
pub enum HostsError {
    /// A file or directory that cannot be read.
    #[error("cannot read `{path}`")]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A `hosts.toml` that is not TOML.
    #[error("`{path}` is not valid TOML")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's complaint.
        #[source]
        source: Box<toml::de::Error>,
    },
    /// A `hosts.toml` whose values do not make sense.
    #[error("`{path}`: {detail}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A `server` URL lkcache cannot use.
    #[error("the `server` configured for `{registry}` is unusable: {detail}")]
    Server {
        /// The registry.
        registry: String,
        /// What is wrong.
        detail: String,
    },
    /// A mirror URL lkcache cannot use.
    #[error("invalid mirror `{input}`: {detail}")]
    Mirror {
        /// The mirror as given.
        input: String,
        /// What is wrong.
        detail: String,
    },
    /// A certificate or key file lkcache cannot use.
    #[error("cannot use the certificate file `{path}`: {detail}")]
    Certificate {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A proxy lkcache cannot use.
    #[error("cannot use the proxy `{url}` from {variable}: {detail}")]
    Proxy {
        /// The proxy, without user name and password.
        url: String,
        /// Where it was configured.
        variable: &'static str,
        /// What is wrong.
        detail: String,
    },
}

#[cfg(test)]
mod tests;
