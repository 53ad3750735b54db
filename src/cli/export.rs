//! `lkcache export`: cached images out as an OCI layout archive, a Docker
//! archive, or one flat root filesystem.

use std::fs::File;
use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use lkcache::export::{self, ExportOptions, ExportReport, Format, OutputFile};
use lkcache::{Platform, Reference};

use super::args::parse_all;
use super::ls::human_bytes;
use super::{Cli, Failure, open_store};

#[derive(Debug, Args)]
pub(super) struct ExportArgs {
    /// Images to export, as cached: `alpine:3.19`, `ghcr.io/org/app@sha256:…`.
    /// For `filesystem`, laid one over the other in this order.
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<String>,

    /// The form of the archive.
    #[arg(long, value_enum, value_name = "FORMAT")]
    format: FormatArg,

    /// The platform to export, `os/arch[/variant]` [default: the host's].
    #[arg(long, value_name = "PLATFORM")]
    platform: Option<String>,

    /// With `--format oci`: the index and every platform the cache holds
    /// completely.
    #[arg(long, conflicts_with = "platform")]
    all_platforms: bool,

    /// Where to write the archive, `-` for stdout [default: stdout, unless
    /// it is a terminal].
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,

    /// The name the archive gives the image (one image only).
    #[arg(long, value_name = "NEWNAME")]
    name: Option<String>,
}

/// The formats, as the command line spells them.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum FormatArg {
    /// A tar of an OCI image layout.
    Oci,
    /// A tar that `docker load` accepts.
    Docker,
    /// The root filesystem as one flat tar.
    Filesystem,
}

impl From<FormatArg> for Format {
    fn from(format: FormatArg) -> Format {
        match format {
            FormatArg::Oci => Format::Oci,
            FormatArg::Docker => Format::Docker,
            FormatArg::Filesystem => Format::Filesystem,
        }
    }
}

pub(super) fn run(cli: &Cli, args: &ExportArgs) -> Result<u8, Failure> {
    let options = options(args)?;
    let references = parse_all::<Reference>(&args.images, "image reference")?;
    if options.name.is_some() && references.len() > 1 {
        return Err(Failure::usage("--name renames one image; give only one"));
    }
    let to_stdout = match &args.output {
        Some(path) => path.as_os_str() == "-",
        None if std::io::stdout().is_terminal() => {
            return Err(Failure::usage(
                "refusing to write an archive to a terminal; name a file with -o FILE, \
                 or redirect stdout",
            ));
        }
        None => true,
    };
    let store = open_store(cli)?;

    let failed = |source| {
        Failure::failed(ExportFailed {
            images: args.images.join("`, `"),
            source,
        })
    };
    let report = if to_stdout {
        let stdout = std::io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .map_err(Failure::failed)?;
        export::export(&store, &references, &options, File::from(stdout)).map_err(failed)?
    } else {
        let path = args.output.as_deref().expect("not stdout, so a path");
        let mut output = OutputFile::create(path).map_err(failed)?;
        let report = export::export(&store, &references, &options, &mut output).map_err(failed)?;
        output.commit().map_err(failed)?;
        report
    };

    print_warnings(&report);
    if !to_stdout {
        print_report(
            &report,
            args.output.as_deref().unwrap_or_else(|| "-".as_ref()),
        );
    }
    Ok(0)
}

fn options(args: &ExportArgs) -> Result<ExportOptions, Failure> {
    let format = Format::from(args.format);
    if args.all_platforms && format != Format::Oci {
        return Err(Failure::usage(format!(
            "--all-platforms needs --format oci; a {format} archive holds one platform per image"
        )));
    }
    let platform = match &args.platform {
        Some(platform) => {
            parse_all::<Platform>(std::slice::from_ref(platform), "platform")?.remove(0)
        }
        None => Platform::host(),
    };
    let name = match &args.name {
        Some(name) => Some(parse_all::<Reference>(std::slice::from_ref(name), "name")?.remove(0)),
        None => None,
    };
    Ok(ExportOptions {
        format,
        platform,
        all_platforms: args.all_platforms,
        name,
    })
}

#[derive(Debug, thiserror::Error)]
#[error("cannot export `{images}`")]
struct ExportFailed {
    images: String,
    #[source]
    source: export::ExportError,
}

/// Prints what the archive lacks, to stderr: dropped layer entries and
/// platforms left out of an index.
fn print_warnings(report: &ExportReport) {
    for dropped in &report.dropped {
        eprintln!("warning: {dropped}");
    }
    for image in &report.images {
        if image.platforms_left_out > 0 {
            eprintln!(
                "warning: `{}`: {} platform(s) of the index are not cached and were left out; \
                 the archive holds a new index `{}`",
                image.source, image.platforms_left_out, image.root.digest
            );
        }
    }
}

fn print_report(report: &ExportReport, path: &std::path::Path) {
    for image in &report.images {
        let platforms: Vec<String> = image.platforms.iter().map(Platform::to_string).collect();
        println!(
            "{} {} [{}]",
            image.name,
            image.root.digest,
            platforms.join(",")
        );
    }
    println!(
        "wrote {} to {}",
        human_bytes(report.archive_bytes),
        path.display()
    );
}
