//! The content graph below a name: from a root descriptor through indexes
//! and manifests to configs and layers, as far as the cache holds it.
//!
//! Garbage collection marks what this reaches, verification checks it, and
//! the listing sizes it; all three need the same answer to "what belongs to
//! this name", so it is computed here once. Manifests are read with their
//! digest checked, so a corrupt manifest is reported as broken rather than
//! trusted to name the blobs below it.

use std::collections::HashSet;

use crate::digest::Digest;
use crate::manifest::{Descriptor, Manifest};
use crate::media_type::{self, ManifestKind};
use crate::platform::Platform;

use super::{Store, StoreError};

/// Indexes nested deeper than this are not followed: no real image needs it,
/// and it bounds the work a hostile cache can cause.
const MAX_DEPTH: usize = 8;

/// What a blob is to the image that reaches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// An index or manifest list.
    Index,
    /// An image manifest (or attestation manifest).
    Manifest,
    /// An image config.
    Config,
    /// A layer.
    Layer,
}

/// What the cache holds of a reached blob.
#[derive(Debug)]
pub enum Holding {
    /// Absent: for an index's other platforms this is by design.
    Missing,
    /// Present with the size its descriptor gives.
    Present,
    /// A manifest or index that is present but cannot be read or trusted.
    Broken(StoreError),
}

/// One blob reached from a root.
#[derive(Debug)]
pub struct Reached {
    /// The descriptor that names it.
    pub descriptor: Descriptor,
    /// What it is.
    pub role: Role,
    /// The platform of the manifest it belongs to, where an index says.
    pub platform: Option<Platform>,
    /// Whether it is present.
    pub holding: Holding,
}

impl Store {
    /// Lists every blob reachable from `root`, each once, parents before
    /// children.
    pub fn reach(&self, root: &Descriptor) -> Vec<Reached> {
        let mut walk = Walk {
            store: self,
            seen: HashSet::new(),
            reached: Vec::new(),
        };
        walk.visit(root, role_of(&root.media_type), None, 0);
        walk.reached
    }
}

struct Walk<'a> {
    store: &'a Store,
    seen: HashSet<Digest>,
    reached: Vec<Reached>,
}

impl Walk<'_> {
    fn visit(
        &mut self,
        descriptor: &Descriptor,
        role: Role,
        platform: Option<Platform>,
        depth: usize,
    ) {
        if !self.seen.insert(descriptor.digest.clone()) {
            return;
        }
        let is_document = matches!(role, Role::Index | Role::Manifest);
        let holding = match self.store.has_blob(descriptor) {
            false => Holding::Missing,
            true if !is_document || depth > MAX_DEPTH => Holding::Present,
            true => match self.store.read_manifest(descriptor) {
                Ok(manifest) => {
                    self.push(descriptor, role, platform.clone(), Holding::Present);
                    self.descend(&manifest, platform, depth);
                    return;
                }
                Err(err) => Holding::Broken(err),
            },
        };
        self.push(descriptor, role, platform, holding);
    }

    fn descend(&mut self, manifest: &Manifest, platform: Option<Platform>, depth: usize) {
        match manifest {
            Manifest::Index(index) => {
                for child in &index.manifests {
                    let platform = child.platform.as_ref().map(Platform::normalize);
                    self.visit(child, role_of(&child.media_type), platform, depth + 1);
                }
            }
            Manifest::Image(image) => {
                self.visit(&image.config, Role::Config, platform.clone(), depth + 1);
                for layer in &image.layers {
                    self.visit(layer, Role::Layer, platform.clone(), depth + 1);
                }
            }
        }
    }

    fn push(
        &mut self,
        descriptor: &Descriptor,
        role: Role,
        platform: Option<Platform>,
        holding: Holding,
    ) {
        self.reached.push(Reached {
            descriptor: descriptor.clone(),
            role,
            platform,
            holding,
        });
    }
}

/// Tells whether a root or an index entry is an index or a manifest; an
/// unknown type is treated as a manifest, whose reading then reports it.
fn role_of(media_type: &str) -> Role {
    match media_type::manifest_kind(media_type) {
        Some(ManifestKind::Index) => Role::Index,
        _ => Role::Manifest,
    }
}
