//! lkcache: a daemonless cache of container images in a LinuxKit-compatible
//! OCI image layout.
//!
//! The library is the product as much as the command line: a builder opens a
//! [`Store`], pulls images into it with a [`Puller`], and reads an image's
//! manifest, config and layers back through [`Store::image`].

pub mod digest;
pub mod list;
pub mod manifest;
pub mod media_type;
pub mod platform;
pub mod pull;
pub mod reference;
pub mod registry;
pub mod store;

pub use digest::Digest;
pub use platform::Platform;
pub use pull::{PullOptions, PullReport, Puller};
pub use reference::Reference;
pub use store::Store;
