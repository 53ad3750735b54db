//! Image references such as `alpine`, `ghcr.io/org/app:1.2` or
//! `localhost:5000/foo@sha256:…`: parsing them, normalising them and printing
//! them, plus deciding which registries are loopback and so spoken to over
//! plain HTTP.
//!
//! The rules are Docker's, as CNCF distribution/reference implements them:
//! [`Reference::from_str`] behaves like `ParseNormalizedNamed` followed by
//! `ParseDockerRef` (familiar names expand to `docker.io/library/…`, the tag
//! defaults to `latest`, and a tag written together with a digest is
//! dropped), and [`parse_unnormalized`] behaves like the lower-level `Parse`.
//! The grammar is the one in distribution/reference's `regexp.go`, checked by
//! a hand-written parser. Digests may be sha256, sha384 or sha512.

use std::borrow::Cow;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::digest::{Digest, DigestError};

/// The domain Docker Hub references normalise to.
const DEFAULT_DOMAIN: &str = "docker.io";
/// The old name of Docker Hub, rewritten to [`DEFAULT_DOMAIN`].
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
/// The host that actually serves the registry API for `docker.io`.
const DOCKER_HUB_REGISTRY: &str = "registry-1.docker.io";
/// The namespace of Docker Hub's official images (`alpine` is `library/alpine`).
const OFFICIAL_REPO_PREFIX: &str = "library/";
const DEFAULT_TAG: &str = "latest";
/// distribution's `NameTotalLengthMax`: despite its name it limits the
/// repository path only, not the domain.
const NAME_TOTAL_LENGTH_MAX: usize = 255;
const TAG_MAX_LEN: usize = 128;

/// A fully expanded image reference: registry domain, repository path, and
/// either a tag or a digest.
///
/// Built by parsing (see [`Reference::from_str`]), so it is always valid and
/// always has exactly one of tag and digest, as `ParseDockerRef` leaves it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Returns the registry domain, with port: `docker.io`, `localhost:5000`,
    /// `[::1]:5000`.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Returns the repository path within the registry: `library/alpine`.
    pub fn repository(&self) -> &str {
        &self.path
    }

    /// Returns the tag: `None` when the reference is pinned to a digest, and
    /// `latest` when the input named neither tag nor digest.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// Returns the digest the reference is pinned to, if any.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// Returns domain and path without tag or digest:
    /// `docker.io/library/alpine`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// Returns the short form Docker shows users (its `FamiliarString`):
    /// `alpine:3.13`, `user/app@sha256:…`, `ghcr.io/org/app:1.0`.
    pub fn familiar(&self) -> String {
        let mut out = self.familiar_name();
        if let Some(tag) = &self.tag {
            out.push(':');
            out.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            out.push('@');
            out.push_str(&digest.to_string());
        }
        out
    }

    /// Returns the name with Docker Hub's domain and, for official images,
    /// its `library/` namespace left out.
    fn familiar_name(&self) -> String {
        if self.domain != DEFAULT_DOMAIN {
            return self.name();
        }
        // Only a direct child of `library/` is an official image; deeper
        // paths keep the prefix so that they stay unambiguous.
        let first = self.path.split('/').next().unwrap_or_default();
        match self.path.strip_prefix(OFFICIAL_REPO_PREFIX) {
            Some(official) if !official.contains('/') => official.to_string(),
            // Docker would print `docker.io/a.b/c` as `a.b/c`, which names
            // the registry `a.b`; keeping the domain keeps the image.
            _ if looks_like_domain(first) => self.name(),
            _ => self.path.clone(),
        }
    }

    /// Returns the host (and port) to contact for the registry API:
    /// `registry-1.docker.io` for `docker.io`, else the domain itself.
    pub fn registry_host(&self) -> &str {
        if self.domain == DEFAULT_DOMAIN {
            DOCKER_HUB_REGISTRY
        } else {
            &self.domain
        }
    }

    /// Tells whether the registry is on this machine, and so is contacted
    /// over plain HTTP: `localhost`, `*.localhost`, any IPv4 address in
    /// 127.0.0.0/8 and `[::1]`, each with or without a port.
    pub fn is_loopback(&self) -> bool {
        is_loopback_host(split_port(&self.domain).0)
    }

    /// Returns the same repository pinned to `digest`, without a tag.
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: None,
            digest: Some(digest),
        }
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    /// Parses `s` as Docker does (`ParseNormalizedNamed`, then
    /// `ParseDockerRef`): expands familiar names, defaults the tag to
    /// `latest`, and keeps only the digest when both tag and digest are given.
    fn from_str(s: &str) -> Result<Reference, ReferenceError> {
        let parsed = parse_normalized(s)?;
        let tag = match (&parsed.digest, parsed.tag) {
            (Some(_), _) => None,
            (None, Some(tag)) => Some(tag),
            (None, None) => Some(DEFAULT_TAG.to_string()),
        };
        Ok(Reference {
            domain: parsed.domain,
            path: parsed.path,
            tag,
            digest: parsed.digest,
        })
    }
}

impl fmt::Display for Reference {
    /// Writes the fully expanded form: `docker.io/library/alpine:latest`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// A reference exactly as written, with no defaults filled in: what
/// distribution's `Parse` returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedReference {
    /// The registry domain and port; empty when the reference names none.
    pub domain: String,
    /// The repository path.
    pub path: String,
    /// The tag, when one was written.
    pub tag: Option<String>,
    /// The digest, when one was written.
    pub digest: Option<Digest>,
}

/// Parses `s` as distribution's `Parse` does: checks the grammar but adds no
/// defaults, so `test.com:5000` is the repository `test.com` with tag `5000`.
pub fn parse_unnormalized(s: &str) -> Result<ParsedReference, ReferenceError> {
    parse_as(s, s)
}

/// Why a string is not an image reference. Each variant stands for one of
/// distribution/reference's errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// The string fits no form of the grammar (`ErrReferenceInvalidFormat`).
    #[error(
        "`{0}` is not a valid image reference; expected `[host[:port]/]path[:tag][@digest]`, \
         path in lower case"
    )]
    InvalidFormat(String),
    /// The repository path has upper-case letters (`ErrNameContainsUppercase`).
    #[error("image reference `{0}` has upper-case letters in its repository path; use lower case")]
    NameContainsUppercase(String),
    /// The repository path is longer than 255 characters (`ErrNameTooLong`).
    #[error(
        "image reference `{reference}` has a repository path of {length} characters; \
         at most 255 are allowed"
    )]
    NameTooLong {
        /// The reference as given.
        reference: String,
        /// The length of its repository path.
        length: usize,
    },
    /// The string is empty (`ErrNameEmpty`).
    #[error("image reference is empty")]
    NameEmpty,
    /// The string is 64 hex characters: an image id, which Docker refuses as
    /// a repository name.
    #[error(
        "`{0}` is a 64-character hex string, which cannot be a repository name; \
         to pin an image by content write `name@sha256:<hex>`"
    )]
    HexIdentifier(String),
    /// The digest after `@` is malformed, has the wrong length or uses an
    /// unsupported algorithm (go-digest's errors).
    #[error("image reference `{reference}` has an invalid digest")]
    Digest {
        /// The reference as given.
        reference: String,
        /// What is wrong with the digest.
        #[source]
        source: DigestError,
    },
}

/// Follows `ParseNormalizedNamed`: expand the familiar form, then `Parse` it.
fn parse_normalized(s: &str) -> Result<ParsedReference, ReferenceError> {
    if s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(ReferenceError::HexIdentifier(s.to_string()));
    }
    let (domain, remainder) = split_docker_domain(s);
    // Upstream checks case before parsing so that `Ubuntu` gets a clearer
    // error than "invalid format"; the tag may be upper case, so stop at `:`.
    let remote = remainder
        .split_once(':')
        .map_or(&*remainder, |(remote, _)| remote);
    if remote.to_lowercase() != remote {
        return Err(ReferenceError::NameContainsUppercase(s.to_string()));
    }
    let parsed = parse_as(&format!("{domain}/{remainder}"), s)?;
    // A first component with `.` but also `_` (`a_b.c/d`) is taken for a
    // domain, fails the host grammar, and upstream then reparses the whole
    // string as a path with no domain at all. Nothing can be pulled from
    // such a reference, so refuse it here rather than later.
    if parsed.domain.is_empty() {
        return Err(ReferenceError::InvalidFormat(s.to_string()));
    }
    Ok(parsed)
}

/// Splits a familiar name into domain and remainder as `splitDockerDomain`
/// does, adding `library/` to single-component Docker Hub names.
fn split_docker_domain(name: &str) -> (&str, Cow<'_, str>) {
    let (domain, remainder) = match name.split_once('/') {
        Some((first, rest)) if first == LEGACY_DEFAULT_DOMAIN => (DEFAULT_DOMAIN, rest),
        Some((first, rest)) if looks_like_domain(first) => (first, rest),
        _ => (DEFAULT_DOMAIN, name),
    };
    if domain == DEFAULT_DOMAIN && !remainder.contains('/') {
        return (
            domain,
            Cow::Owned(format!("{OFFICIAL_REPO_PREFIX}{remainder}")),
        );
    }
    (domain, Cow::Borrowed(remainder))
}

/// Tells whether the first path component is a registry rather than a Docker
/// Hub namespace. Upper case counts because Hub namespaces are lower case
/// (an upstream quirk: `Foo/bar` has domain `Foo`).
fn looks_like_domain(first: &str) -> bool {
    first == "localhost" || first.contains(['.', ':']) || first.to_lowercase() != first
}

/// Parses `s` with the reference grammar; errors name `input`, the string
/// the caller was given.
fn parse_as(s: &str, input: &str) -> Result<ParsedReference, ReferenceError> {
    let Some(parts) = Parts::split(s) else {
        return Err(no_match_error(s, input));
    };
    if parts.path.len() > NAME_TOTAL_LENGTH_MAX {
        return Err(ReferenceError::NameTooLong {
            reference: input.to_string(),
            length: parts.path.len(),
        });
    }
    let digest = parts
        .digest
        .map(Digest::from_str)
        .transpose()
        .map_err(|source| ReferenceError::Digest {
            reference: input.to_string(),
            source,
        })?;
    Ok(ParsedReference {
        domain: parts.domain.to_string(),
        path: parts.path.to_string(),
        tag: parts.tag.map(str::to_string),
        digest,
    })
}

/// Picks the error for a string that fits no form, as `Parse` does: a string
/// that would fit once lower-cased gets the upper-case error.
fn no_match_error(s: &str, input: &str) -> ReferenceError {
    if s.is_empty() {
        ReferenceError::NameEmpty
    } else if Parts::split(&s.to_lowercase()).is_some() {
        ReferenceError::NameContainsUppercase(input.to_string())
    } else {
        ReferenceError::InvalidFormat(input.to_string())
    }
}

/// The pieces of a reference that fits the grammar; the digest is only
/// checked for shape here, not for algorithm or length.
struct Parts<'a> {
    domain: &'a str,
    path: &'a str,
    tag: Option<&'a str>,
    digest: Option<&'a str>,
}

impl<'a> Parts<'a> {
    /// Splits `s` along the grammar `[domain/]path[:tag][@digest]`, or returns
    /// `None` when it does not fit.
    fn split(s: &'a str) -> Option<Parts<'a>> {
        let (rest, digest) = match s.split_once('@') {
            Some((rest, digest)) => (rest, Some(digest)),
            None => (s, None),
        };
        if digest.is_some_and(|d| !is_digest_syntax(d)) {
            return None;
        }
        // A tag holds no `/`, so a last `:` followed by a `/` belongs to a
        // port (or an IPv6 address) and there is no tag.
        let (name, tag) = match rest.rsplit_once(':') {
            Some((name, tag)) if !tag.contains('/') => (name, Some(tag)),
            _ => (rest, None),
        };
        if tag.is_some_and(|t| !is_tag(t)) {
            return None;
        }
        let (domain, path) = split_name(name)?;
        Some(Parts {
            domain,
            path,
            tag,
            digest,
        })
    }
}

/// Splits a name into domain and path. Like upstream's regexp, it prefers a
/// domain when the first component can be one, and otherwise reads the whole
/// name as a path.
fn split_name(name: &str) -> Option<(&str, &str)> {
    if let Some((domain, path)) = name.split_once('/')
        && is_domain_and_port(domain)
        && is_remote_name(path)
    {
        return Some((domain, path));
    }
    is_remote_name(name).then_some(("", name))
}

/// Tells whether `s` is `component(/component)*`.
fn is_remote_name(s: &str) -> bool {
    s.split('/').all(is_path_component)
}

/// Tells whether `s` is `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`.
fn is_path_component(s: &str) -> bool {
    let bytes = s.as_bytes();
    let mut i = 0;
    loop {
        let run_start = i;
        while i < bytes.len() && is_lower_alnum(bytes[i]) {
            i += 1;
        }
        if i == run_start {
            return false;
        }
        if i == bytes.len() {
            return true;
        }
        let separator_start = i;
        while i < bytes.len() && !is_lower_alnum(bytes[i]) {
            i += 1;
        }
        if !is_separator(&bytes[separator_start..i]) {
            return false;
        }
    }
}

fn is_lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn is_separator(separator: &[u8]) -> bool {
    matches!(separator, b"." | b"_" | b"__") || separator.iter().all(|&b| b == b'-')
}

/// Tells whether `s` is a host (domain name or bracketed IPv6 address) with
/// an optional all-digit port.
fn is_domain_and_port(s: &str) -> bool {
    let (host, port) = split_port(s);
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    port_ok && (is_ipv6_literal(host) || is_domain_name(host))
}

/// Splits `host[:port]`. An IPv6 host holds colons, so its port is what
/// follows the closing bracket; anything else after the bracket stays with
/// the host, which then fails the host grammar.
fn split_port(domain: &str) -> (&str, Option<&str>) {
    let host_end = if domain.starts_with('[') {
        domain.find(']').map_or(domain.len(), |i| i + 1)
    } else {
        domain.find(':').unwrap_or(domain.len())
    };
    let (host, rest) = domain.split_at(host_end);
    match rest.strip_prefix(':') {
        Some(port) => (host, Some(port)),
        None => (domain, None),
    }
}

/// Tells whether `s` is `\[[a-fA-F0-9:]+\]`; like upstream, it does not
/// check that the address itself is well formed.
fn is_ipv6_literal(s: &str) -> bool {
    s.strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .is_some_and(|inner| {
            !inner.is_empty() && inner.bytes().all(|b| b.is_ascii_hexdigit() || b == b':')
        })
}

/// Tells whether `s` is dot-separated labels of letters, digits and inner
/// hyphens (upper case allowed).
fn is_domain_name(s: &str) -> bool {
    s.split('.').all(|label| {
        let bytes = label.as_bytes();
        match (bytes.first(), bytes.last()) {
            (Some(first), Some(last)) => {
                first.is_ascii_alphanumeric()
                    && last.is_ascii_alphanumeric()
                    && bytes
                        .iter()
                        .all(|&b| b.is_ascii_alphanumeric() || b == b'-')
            }
            _ => false,
        }
    })
}

/// Tells whether `s` is `[\w][\w.-]{0,127}`.
fn is_tag(s: &str) -> bool {
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    match s.as_bytes().split_first() {
        Some((&first, rest)) => {
            s.len() <= TAG_MAX_LEN
                && is_word(first)
                && rest.iter().all(|&b| is_word(b) || b == b'.' || b == b'-')
        }
        None => false,
    }
}

/// Tells whether `s` has the shape the reference grammar allows for a digest:
/// `[A-Za-z][A-Za-z0-9]*([-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}`.
/// Algorithm and length are checked afterwards by [`Digest`], so that those
/// failures get their own errors, as upstream's do.
fn is_digest_syntax(s: &str) -> bool {
    let Some((algorithm, hex)) = s.split_once(':') else {
        return false;
    };
    let algorithm_ok = algorithm.split(['-', '_', '+', '.']).all(|component| {
        component
            .as_bytes()
            .first()
            .is_some_and(u8::is_ascii_alphabetic)
            && component.bytes().all(|b| b.is_ascii_alphanumeric())
    });
    algorithm_ok && hex.len() >= 32 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Tells whether a host (without port) names this machine. Host names are
/// compared without case because DNS ignores it.
fn is_loopback_host(host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    if host == "localhost" || host.ends_with(".localhost") {
        return true;
    }
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse::<Ipv6Addr>().is_ok_and(|ip| ip.is_loopback());
    }
    host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";

    fn parse(s: &str) -> Reference {
        s.parse()
            .unwrap_or_else(|e| panic!("`{s}` should parse: {e}"))
    }

    #[test]
    fn expands_and_shortens_references() {
        let digested = format!("user/app@sha256:{HEX}");
        let cases: &[(&str, &str, &str)] = &[
            ("alpine", "docker.io/library/alpine:latest", "alpine:latest"),
            (
                "alpine:3.13",
                "docker.io/library/alpine:3.13",
                "alpine:3.13",
            ),
            ("user/app", "docker.io/user/app:latest", "user/app:latest"),
            (
                "index.docker.io/user/app",
                "docker.io/user/app:latest",
                "user/app:latest",
            ),
            (
                "docker.io/library/a/b",
                "docker.io/library/a/b:latest",
                "library/a/b:latest",
            ),
            (
                "localhost/foo",
                "localhost/foo:latest",
                "localhost/foo:latest",
            ),
            ("[::1]:5000/foo:t", "[::1]:5000/foo:t", "[::1]:5000/foo:t"),
            ("Foo/bar", "Foo/bar:latest", "Foo/bar:latest"),
            (
                "test.com:5000",
                "docker.io/library/test.com:5000",
                "test.com:5000",
            ),
            (&digested, &format!("docker.io/{digested}"), &digested),
        ];
        for (input, display, familiar) in cases {
            let reference = parse(input);
            assert_eq!(reference.to_string(), *display, "{input}");
            assert_eq!(reference.familiar(), *familiar, "{input}");
            assert_eq!(parse(display), reference, "{input} round trip");
        }
    }

    #[test]
    fn keeps_only_the_digest_of_tag_and_digest() {
        let reference = parse(&format!("gcr.io/a/b:v1@sha256:{HEX}"));
        assert_eq!(reference.tag(), None);
        assert_eq!(reference.to_string(), format!("gcr.io/a/b@sha256:{HEX}"));
        assert_eq!(reference, parse(&format!("gcr.io/a/b@sha256:{HEX}")));
    }

    #[test]
    fn rejects_bad_references_with_specific_errors() {
        type Check = fn(&ReferenceError) -> bool;
        let cases: &[(&str, Check)] = &[
            ("", |e| matches!(e, ReferenceError::InvalidFormat(_))),
            ("Ubuntu", |e| {
                matches!(e, ReferenceError::NameContainsUppercase(_))
            }),
            ("foo/Bar:tag", |e| {
                matches!(e, ReferenceError::NameContainsUppercase(_))
            }),
            (HEX, |e| matches!(e, ReferenceError::HexIdentifier(_))),
            ("foo//bar", |e| {
                matches!(e, ReferenceError::InvalidFormat(_))
            }),
            ("ubuntu:-tag", |e| {
                matches!(e, ReferenceError::InvalidFormat(_))
            }),
            ("a_b.c/d", |e| matches!(e, ReferenceError::InvalidFormat(_))),
            ("x@sha256:0123456789abcdef0123456789abcdef", |e| {
                matches!(
                    e,
                    ReferenceError::Digest {
                        source: DigestError::InvalidLength { .. },
                        ..
                    }
                )
            }),
            (&format!("x@md5:{HEX}"), |e| {
                matches!(
                    e,
                    ReferenceError::Digest {
                        source: DigestError::Unsupported(_),
                        ..
                    }
                )
            }),
            (&format!("foo/{}", "a".repeat(252)), |e| {
                matches!(e, ReferenceError::NameTooLong { length: 256, .. })
            }),
        ];
        for (input, check) in cases {
            match input.parse::<Reference>() {
                Ok(r) => panic!("`{input}` should fail, got {r}"),
                Err(e) => assert!(check(&e), "`{input}`: unexpected error {e:?}"),
            }
        }
    }

    #[test]
    fn unnormalized_parse_adds_no_defaults() {
        let parsed = parse_unnormalized("test.com:5000").expect("valid");
        assert_eq!(
            (parsed.domain.as_str(), parsed.path.as_str()),
            ("", "test.com")
        );
        assert_eq!(parsed.tag.as_deref(), Some("5000"));
        assert_eq!(parse_unnormalized(""), Err(ReferenceError::NameEmpty));
        assert!(matches!(
            parse_unnormalized("Uppercase:tag"),
            Err(ReferenceError::NameContainsUppercase(_))
        ));
    }

    #[test]
    fn tells_loopback_registries_and_hosts() {
        let cases: &[(&str, bool, &str)] = &[
            ("alpine", false, "registry-1.docker.io"),
            ("localhost/foo", true, "localhost"),
            ("localhost:5000/foo", true, "localhost:5000"),
            ("LOCALHOST/foo", true, "LOCALHOST"),
            ("reg.localhost:1234/foo", true, "reg.localhost:1234"),
            ("127.0.0.2/foo", true, "127.0.0.2"),
            ("127.0.0.1:5000/foo", true, "127.0.0.1:5000"),
            ("[::1]/foo", true, "[::1]"),
            ("[0:0:0:0:0:0:0:1]:5000/foo", true, "[0:0:0:0:0:0:0:1]:5000"),
            ("[::2]:5000/foo", false, "[::2]:5000"),
            ("192.168.1.1/foo", false, "192.168.1.1"),
            ("127.0.0.1.evil.com/foo", false, "127.0.0.1.evil.com"),
            ("localhost.example.com/foo", false, "localhost.example.com"),
        ];
        for (input, loopback, host) in cases {
            let reference = parse(input);
            assert_eq!(reference.is_loopback(), *loopback, "{input}");
            assert_eq!(reference.registry_host(), *host, "{input}");
        }
    }

    #[test]
    fn pins_a_reference_to_a_digest() {
        let digest: Digest = format!("sha256:{HEX}").parse().expect("valid digest");
        let pinned = parse("ghcr.io/org/app:1.0").with_digest(digest.clone());
        assert_eq!(pinned.tag(), None);
        assert_eq!(pinned.digest(), Some(&digest));
        assert_eq!(pinned.name(), "ghcr.io/org/app");
        assert_eq!(pinned.to_string(), format!("ghcr.io/org/app@sha256:{HEX}"));
    }
}
