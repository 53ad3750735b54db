//! lkcache: a daemonless cache of container images in a LinuxKit-compatible
//! OCI image layout.
//!
//! The library is the product as much as the command line: a builder opens a
//! [`Store`], pulls images into it with a [`Puller`], and reads an image's
//! manifest, config and layers back through [`Store::image`].
//!
//! ```no_run
//! use lkcache::{Platform, PullOptions, Puller, Store, pull::NoProgress, registry::Client};
//!
//! let store = Store::open("/var/cache/images")?;
//! let client = Client::new(Default::default());
//! let reference = "alpine:3.20".parse()?;
//! let report = Puller::new(&store, &client, PullOptions::default(), &NoProgress).pull(&reference)?;
//! let image = store.image(&report.name, &Platform::host())?;
//! for layer in image.layers() {
//!     let _compressed_tar = image.open_layer(&store, layer)?;
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod digest;
pub mod export;
pub mod import;
pub mod list;
pub mod manifest;
pub mod media_type;
pub mod platform;
pub mod pull;
pub mod push;
pub mod reference;
pub mod registry;
pub mod repair;
pub mod store;

pub use digest::Digest;
pub use platform::Platform;
pub use pull::{PullOptions, PullReport, Puller};
pub use reference::Reference;
pub use store::Store;
