//! `lkcache import`: images from an OCI layout tar or a `docker save`
//! archive into the cache.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::PathBuf;

use clap::Args;

use lkcache::Platform;
use lkcache::import::{self, ImportError, ImportOptions, ImportedImage};
use lkcache::reference::{self, Reference};

use super::{Cli, Failure, open_store};

#[derive(Debug, Args)]
pub(super) struct ImportArgs {
    /// The archive: an OCI image layout tar or a `docker save` archive,
    /// plain or compressed with gzip or zstd; `-` reads standard input.
    #[arg(value_name = "FILE|-")]
    archive: PathBuf,

    /// The name for what the archive leaves unnamed: an image named only by
    /// a tag `T` becomes `REPOSITORY:T`; the one image with no name at all
    /// becomes NAME.
    #[arg(long, value_name = "REPOSITORY[:TAG]")]
    name: Option<String>,
}

pub(super) fn run(cli: &Cli, args: &ImportArgs) -> Result<u8, Failure> {
    let options = ImportOptions {
        name: args.name.as_deref().map(parse_name).transpose()?,
    };
    let store = open_store(cli)?;
    let is_stdin = args.archive.as_os_str() == "-";
    let shown = if is_stdin {
        "standard input".to_string()
    } else {
        format!("`{}`", args.archive.display())
    };
    let input: Box<dyn Read> = if is_stdin {
        Box::new(io::stdin().lock())
    } else {
        let file = File::open(&args.archive).map_err(|source| {
            Failure::failed(CannotOpen {
                path: args.archive.clone(),
                source,
            })
        })?;
        Box::new(BufReader::with_capacity(1 << 16, file))
    };

    let imported = import::import(&store, input, &options).map_err(|source| {
        let is_usage = source.is_usage();
        let error = ImportFailed {
            archive: shown,
            source,
        };
        if is_usage {
            Failure::usage(error)
        } else {
            Failure::failed(error)
        }
    })?;
    for image in &imported {
        print_image(image);
    }
    Ok(0)
}

/// Parses `--name`: a reference, not pinned to a digest.
fn parse_name(input: &str) -> Result<Reference, Failure> {
    let invalid = |source: Box<dyn std::error::Error>| {
        Failure::usage(InvalidName {
            input: input.to_string(),
            source,
        })
    };
    let written = reference::parse_unnormalized(input).map_err(|e| invalid(Box::new(e)))?;
    if written.digest.is_some() {
        return Err(invalid("a digest cannot name imported content".into()));
    }
    input
        .parse()
        .map_err(|e: reference::ReferenceError| invalid(Box::new(e)))
}

fn print_image(image: &ImportedImage) {
    let platforms: Vec<String> = image.platforms.iter().map(Platform::to_string).collect();
    let platforms = platforms.join(",");
    let digest = &image.root.digest;
    if image.names.is_empty() {
        println!("{digest} imported [{platforms}]");
    }
    for name in &image.names {
        println!("{name} {digest} imported [{platforms}]");
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot open `{}`", path.display())]
struct CannotOpen {
    path: PathBuf,
    #[source]
    source: io::Error,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot import {archive}")]
struct ImportFailed {
    archive: String,
    #[source]
    source: ImportError,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid --name `{input}`")]
struct InvalidName {
    input: String,
    #[source]
    source: Box<dyn std::error::Error>,
}
