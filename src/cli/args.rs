//! Arguments several commands share: how to reach registries, and parsing
//! of references and platforms into usage errors.

use std::time::Duration;

use clap::Args;

use lkcache::registry::{Client, ClientOptions, Credentials, Hosts, Mirror};

use super::Failure;

/// How to reach registries.
#[derive(Debug, Args)]
pub(super) struct RegistryArgs {
    /// A registry (`host[:port]`) to speak plain HTTP to; loopback
    /// registries always are.
    #[arg(
        long = "insecure-registry",
        value_name = "HOST",
        env = "LKCACHE_INSECURE_REGISTRIES",
        value_delimiter = ','
    )]
    insecure_registries: Vec<String>,

    /// Seconds a registry's answer may stall before the request is given
    /// up (a blob download then resumes).
    #[arg(
        long,
        env = "LKCACHE_READ_TIMEOUT",
        value_name = "SECONDS",
        default_value_t = 60
    )]
    read_timeout: u64,

    /// A mirror to pull through, tried before those of the host
    /// configuration (`certs.d/HOST/hosts.toml`); without `REGISTRY=` it
    /// mirrors `docker.io`. Repeatable; pushes never go to mirrors.
    #[arg(long = "mirror", value_name = "[REGISTRY=]URL")]
    mirrors: Vec<Mirror>,
}

impl RegistryArgs {
    /// Creates a registry client with the credentials of the Docker
    /// configuration, the host directories and the mirrors given.
    pub(super) fn client(&self) -> Result<Client, Failure> {
        let credentials = Credentials::from_env().map_err(Failure::failed)?;
        Ok(Client::new(ClientOptions {
            insecure_registries: self.insecure_registries.clone(),
            credentials,
            read_timeout: Some(Duration::from_secs(self.read_timeout)),
            hosts: Hosts::from_env().with_mirrors(self.mirrors.clone()),
            ..ClientOptions::default()
        }))
    }
}

/// Parses every argument, or fails with the first that is malformed.
pub(super) fn parse_all<T>(inputs: &[String], what: &str) -> Result<Vec<T>, Failure>
where
    T: std::str::FromStr,
    T::Err: std::error::Error + 'static,
{
    inputs
        .iter()
        .map(|input| {
            input.parse::<T>().map_err(|error| {
                Failure::usage(InvalidArgument {
                    what: what.to_string(),
                    input: input.clone(),
                    source: Box::new(error),
                })
            })
        })
        .collect()
}

#[derive(Debug, thiserror::Error)]
#[error("invalid {what} `{input}`")]
struct InvalidArgument {
    what: String,
    input: String,
    #[source]
    source: Box<dyn std::error::Error>,
}
