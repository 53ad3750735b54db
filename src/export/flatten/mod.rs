//! Flattening: the layers of one or more images, applied in order, as one
//! tar stream of the root filesystem they make (image-spec, layer.md,
//! "Applying Changesets"), without ever unpacking to disk.
//!
//! Layers are read once each, from the top of the stack down, while later
//! ones decompress on other threads ([`super::layer::Pipeline`]). Reading
//! top-down lets every entry be decided the moment it is read: the layers
//! above have already said whether they replace or remove its path
//! ([`tree`]), so each surviving entry is written straight through and
//! nothing is buffered. Directories still come before what they hold: an
//! upper layer's file whose directory only a lower layer has is preceded
//! by a stand-in entry for that directory (root's, mode 0755), and the
//! directory's own entry, when it comes, follows as a second entry, whose
//! metadata extractors keep. Readers that create nothing themselves, such
//! as the kernel's initramfs unpacker fed a converted export, need that
//! order. Hard links,
//! whose content often lies lower in the stack than the link, wait for it
//! ([`links`]) and are written right after it; the one case a link needs
//! content its own layer already passed over (the target was replaced
//! above) reads that layer a second time, at the end.
//!
//! The output is always safe to unpack: every name is clean and relative,
//! nothing is written beneath a symlink, and entries that would leave the
//! root (absolute names, `..`, paths through a symlink) are dropped and
//! reported as [`DroppedEntry`] values, never followed.

mod links;
mod path;
mod tree;

#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::io::{self, Read, Seek, Write};
use std::sync::Arc;

use crate::digest::Digest;

use super::archive::{CopyError, EntryMeta, TarWriter};
use super::layer::{LayerSource, Pipeline};
use links::{Inode, Links, Resolved, Waiting};
use path::{BadName, Name};
use tree::{LayerIndex, Tree, Verdict};

/// A layer entry left out of the flat tree, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DroppedEntry {
    /// The layer that holds the entry.
    pub layer: Digest,
    /// The entry's name, as the layer gives it (lossy UTF-8).
    pub path: String,
    /// Why it was left out.
    pub reason: DropReason,
}

/// Why an entry was left out of the flat tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DropReason {
    /// The name starts with `/`.
    AbsolutePath,
    /// The name has a `..` component.
    ParentComponent,
    /// A whiteout (`.wh.`) that names nothing.
    EmptyWhiteout,
    /// The entry lies beneath a symlink or file that its own layer put at
    /// `parent`: it would be written through it.
    ThroughNonDirectory {
        /// The ancestor that is not a directory.
        parent: String,
    },
    /// The entry is a symlink or other non-directory, but an upper layer
    /// put `child` beneath its path; the path stays a directory.
    HasEntriesBeneath {
        /// One entry beneath the path.
        child: String,
        /// The layer of `child`.
        child_layer: Digest,
    },
    /// A hard link whose target is absolute, has `..`, or is itself.
    UnsafeLinkTarget {
        /// The target as the layer gives it.
        target: String,
    },
    /// A hard link whose target exists neither in its layer nor below.
    DanglingHardLink {
        /// The target.
        target: String,
    },
    /// A hard link to a directory.
    HardLinkToDirectory {
        /// The target.
        target: String,
    },
    /// A tar entry type that is no file system object.
    UnsupportedType(char),
    /// An entry at the root that is not a directory.
    RootNotDirectory,
}

impl fmt::Display for DroppedEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "layer `{}`: `{}` dropped: ", self.layer, self.path)?;
        match &self.reason {
            DropReason::AbsolutePath => f.write_str("its name is absolute"),
            DropReason::ParentComponent => f.write_str("its name has a `..` component"),
            DropReason::EmptyWhiteout => f.write_str("it is a whiteout that names nothing"),
            DropReason::ThroughNonDirectory { parent } => write!(
                f,
                "it lies beneath `{parent}`, which the same layer made a symlink or file"
            ),
            DropReason::HasEntriesBeneath { child, child_layer } => write!(
                f,
                "it is a symlink or file, but layer `{child_layer}` puts `{child}` beneath it; \
                 the path stays a directory"
            ),
            DropReason::UnsafeLinkTarget { target } => {
                write!(f, "it is a hard link to `{target}`, outside the root")
            }
            DropReason::DanglingHardLink { target } => write!(
                f,
                "it is a hard link to `{target}`, which neither its layer nor those below hold"
            ),
            DropReason::HardLinkToDirectory { target } => {
                write!(f, "it is a hard link to the directory `{target}`")
            }
            DropReason::UnsupportedType(kind) => {
                write!(f, "its tar entry type `{kind}` is not a file system object")
            }
            DropReason::RootNotDirectory => f.write_str("the root can only be a directory"),
        }
    }
}

impl From<BadName> for DropReason {
    fn from(bad: BadName) -> DropReason {
        match bad {
            BadName::Absolute => DropReason::AbsolutePath,
            BadName::Parent => DropReason::ParentComponent,
            BadName::EmptyWhiteout => DropReason::EmptyWhiteout,
        }
    }
}

/// Why flattening failed.
#[derive(Debug, thiserror::Error)]
pub enum FlattenError {
    /// A layer could not be read: missing, corrupt, or not a tar.
    #[error("cannot read layer `{layer}`{}", at.as_ref().map(|p| format!(" at `{p}`")).unwrap_or_default())]
    Layer {
        /// The layer.
        layer: Digest,
        /// The entry being read, when one was.
        at: Option<String>,
        /// What went wrong.
        #[source]
        source: io::Error,
    },
    /// The output could not be written.
    #[error("cannot write the flattened archive")]
    Write(#[source] io::Error),
}

/// Writes the root filesystem of `layers` (base first) to `out`, reading
/// up to `ahead` layers in advance; returns the entries left out.
pub(crate) fn flatten<W: Write>(
    layers: &[Arc<dyn LayerSource>],
    out: &mut TarWriter<W>,
    ahead: usize,
) -> Result<Vec<DroppedEntry>, FlattenError> {
    let mut flattener = Flattener {
        out,
        digests: layers.iter().map(|l| l.digest().clone()).collect(),
        tree: Tree::default(),
        links: Links::default(),
        removals: Vec::new(),
        dropped: Vec::new(),
        dirs_written: HashSet::new(),
    };
    let mut pipeline = Pipeline::new(layers.iter().rev().cloned().collect(), ahead);
    for layer in (0..layers.len()).rev() {
        let layer = layer as LayerIndex;
        let Some(stream) = pipeline.next_layer() else {
            break;
        };
        flattener.read_layer(layer, stream)?;
        flattener.end_layer(layer);
    }
    flattener.abandon_awaited();
    flattener.reread(layers)?;
    Ok(flattener.dropped)
}

/// What a whiteout or opaque marker of the current layer removed.
enum Removal {
    Whiteout(Vec<u8>),
    Opaque(Vec<u8>),
}

/// How an entry's tar type is treated.
enum Class {
    Directory,
    HardLink,
    /// Any other file system object, written with this type flag.
    Other(u8),
    Unsupported(u8),
}

struct Flattener<'a, W: Write> {
    out: &'a mut TarWriter<W>,
    digests: Vec<Digest>,
    tree: Tree,
    links: Links,
    removals: Vec<Removal>,
    dropped: Vec<DroppedEntry>,
    /// The directories written so far, by their own entries or by
    /// stand-ins; with each one, its ancestors.
    dirs_written: HashSet<Box<[u8]>>,
}

impl<W: Write> Flattener<'_, W> {
    fn read_layer<R: Read + Seek>(
        &mut self,
        layer: LayerIndex,
        stream: R,
    ) -> Result<(), FlattenError> {
        let mut archive = tar::Archive::new(stream);
        let entries = archive
            .entries_with_seek()
            .map_err(|e| self.read_error(layer, None, e))?;
        for (ordinal, entry) in entries.enumerate() {
            let mut entry = entry.map_err(|e| self.read_error(layer, None, e))?;
            self.entry(layer, ordinal as u64, &mut entry)?;
        }
        // Read past the end of the archive to the end of the stream, so
        // that the decompressor checks its trailer (gzip's CRC and length).
        io::copy(&mut archive.into_inner(), &mut io::sink())
            .map_err(|e| self.read_error(layer, None, e))?;
        Ok(())
    }

    fn entry<R: Read>(
        &mut self,
        layer: LayerIndex,
        ordinal: u64,
        entry: &mut tar::Entry<'_, R>,
    ) -> Result<(), FlattenError> {
        let typeflag = entry.header().entry_type().as_byte();
        if typeflag == b'g' {
            tracing::debug!(layer = %self.digests[layer as usize], "ignoring a PAX global header");
            return Ok(());
        }
        let raw = entry.path_bytes().into_owned();
        let path = match path::parse(&raw) {
            Ok(Name::Entry(path)) => path,
            Ok(Name::Whiteout(target)) => {
                self.whiteout(layer, target);
                return Ok(());
            }
            Ok(Name::Opaque(dir)) => {
                self.opaque(layer, dir);
                return Ok(());
            }
            Ok(Name::Bookkeeping) => return Ok(()),
            Err(bad) => {
                self.drop_entry(layer, &raw, bad.into());
                return Ok(());
            }
        };
        match classify(typeflag, &raw) {
            Class::Directory => self.directory(layer, path, entry),
            Class::Unsupported(kind) => {
                self.drop_unusable(layer, path, DropReason::UnsupportedType(kind as char));
                Ok(())
            }
            _ if path.is_empty() => {
                self.drop_unusable(layer, path, DropReason::RootNotDirectory);
                Ok(())
            }
            Class::HardLink => self.hard_link(layer, path, entry),
            Class::Other(typeflag) => self.non_directory(layer, ordinal, path, typeflag, entry),
        }
    }

    fn directory<R: Read>(
        &mut self,
        layer: LayerIndex,
        path: Vec<u8>,
        entry: &mut tar::Entry<'_, R>,
    ) -> Result<(), FlattenError> {
        if let Some(group) = self.links.take_waiting_for(&path) {
            let target = path::display(&path);
            for link in self.links.abandon(group) {
                let reason = DropReason::HardLinkToDirectory {
                    target: target.clone(),
                };
                self.drop_entry(link.layer, &link.path, reason);
            }
        }
        match self.tree.judge(&path, layer, true) {
            Verdict::Visible => {
                let meta = self.meta(layer, &path, entry, b'5')?;
                self.write(layer, &path, &meta, entry)?;
                self.tree.record_written(&path, layer, true);
            }
            Verdict::Hidden => self.tree.record_seen(&path, layer, true),
            Verdict::ThroughNonDirectory { parent } => {
                let parent = path::display(&parent);
                self.drop_entry(layer, &path, DropReason::ThroughNonDirectory { parent });
                self.links.record(path, Inode::Dropped);
                return Ok(());
            }
            Verdict::HasEntriesBeneath { .. } => unreachable!("directories are never judged so"),
        }
        self.links.record(path, Inode::Directory);
        Ok(())
    }

    fn non_directory<R: Read>(
        &mut self,
        layer: LayerIndex,
        ordinal: u64,
        path: Vec<u8>,
        typeflag: u8,
        entry: &mut tar::Entry<'_, R>,
    ) -> Result<(), FlattenError> {
        let verdict = self.tree.judge(&path, layer, false);
        let awaited_by = self.links.take_waiting_for(&path);
        match verdict {
            Verdict::Visible => {
                let meta = self.meta(layer, &path, entry, typeflag)?;
                self.write(layer, &path, &meta, entry)?;
                self.tree.record_written(&path, layer, false);
                if let Some(group) = awaited_by {
                    let links = self.links.provide_at(group, path.clone());
                    self.write_links(&links, &path)?;
                }
                self.links.record(path.clone(), Inode::Written(path));
            }
            Verdict::Hidden => {
                self.tree.record_seen(&path, layer, false);
                match awaited_by.and_then(|group| self.links.provide_first(group)) {
                    Some((first, rest)) => {
                        // Only links need this content: it goes under the
                        // first one's name.
                        let meta = self.meta(layer, &path, entry, typeflag)?;
                        self.write(layer, &first.path, &meta, entry)?;
                        self.write_links(&rest, &first.path)?;
                        self.links.record(path, Inode::Written(first.path));
                    }
                    None => self.links.record(path, Inode::Skipped(ordinal)),
                }
            }
            verdict => self.refuse(layer, path, verdict, awaited_by),
        }
        Ok(())
    }

    fn hard_link<R: Read>(
        &mut self,
        layer: LayerIndex,
        path: Vec<u8>,
        entry: &mut tar::Entry<'_, R>,
    ) -> Result<(), FlattenError> {
        let raw_target = entry
            .link_name_bytes()
            .map(Cow::into_owned)
            .unwrap_or_default();
        let target = match path::clean(&raw_target) {
            Ok(target) if !target.is_empty() && target != path => target,
            _ => {
                let target = String::from_utf8_lossy(&raw_target).into_owned();
                self.drop_unusable(layer, path, DropReason::UnsafeLinkTarget { target });
                return Ok(());
            }
        };
        let verdict = self.tree.judge(&path, layer, false);
        if !matches!(verdict, Verdict::Visible | Verdict::Hidden) {
            let awaited_by = self.links.take_waiting_for(&path);
            self.refuse(layer, path, verdict, awaited_by);
            return Ok(());
        }
        let resolved = match self.links.resolve(&target, layer) {
            Resolved::Directory => {
                let target = path::display(&target);
                self.drop_unusable(layer, path, DropReason::HardLinkToDirectory { target });
                return Ok(());
            }
            Resolved::Dropped => {
                let target = path::display(&target);
                self.drop_unusable(layer, path, DropReason::DanglingHardLink { target });
                return Ok(());
            }
            resolved => resolved,
        };
        let awaited_by = self.links.take_waiting_for(&path);
        if verdict == Verdict::Visible {
            let meta = self.meta(layer, &path, entry, b'1')?;
            self.tree.record_written(&path, layer, false);
            match &resolved {
                Resolved::Written(carrier) => self.write_link(&path, &meta, carrier)?,
                Resolved::Group(group) => self.links.wait(
                    *group,
                    Waiting {
                        path: path.clone(),
                        meta,
                        layer,
                    },
                ),
                _ => unreachable!("handled above"),
            }
        } else {
            self.tree.record_seen(&path, layer, false);
        }
        match resolved {
            Resolved::Written(carrier) => {
                if let Some(group) = awaited_by {
                    let links = self.links.provide_at(group, carrier.clone());
                    self.write_links(&links, &carrier)?;
                }
                self.links.record(path, Inode::Written(carrier));
            }
            Resolved::Group(group) => {
                if let Some(upper) = awaited_by {
                    let links = self.links.merge(upper, group);
                    debug_assert!(links.is_empty(), "a group without content writes nothing");
                }
                self.links.record(path, Inode::Group(group));
            }
            _ => unreachable!("handled above"),
        }
        Ok(())
    }

    /// Handles a non-directory entry that cannot go where it says: beneath
    /// its own layer's symlink (dropped), or where upper layers put entries
    /// beneath it (the path stays a directory).
    fn refuse(
        &mut self,
        layer: LayerIndex,
        path: Vec<u8>,
        verdict: Verdict,
        awaited_by: Option<links::GroupId>,
    ) {
        self.abandon(awaited_by, &path);
        let reason = match verdict {
            Verdict::ThroughNonDirectory { parent } => DropReason::ThroughNonDirectory {
                parent: path::display(&parent),
            },
            Verdict::HasEntriesBeneath {
                child,
                layer: child_layer,
            } => {
                // The entries beneath, written already, made the path a
                // directory and wrote a stand-in for it.
                self.tree.record_seen(&path, layer, false);
                DropReason::HasEntriesBeneath {
                    child: path::display(&child),
                    child_layer: self.digests[child_layer as usize].clone(),
                }
            }
            Verdict::Visible | Verdict::Hidden => unreachable!("only refusals come here"),
        };
        self.drop_unusable(layer, path, reason);
    }

    fn whiteout(&mut self, layer: LayerIndex, target: Vec<u8>) {
        if self.tree.judge_ancestors(&target, layer).is_none() {
            self.tree.record_whiteout(&target, layer);
        }
        self.removals.push(Removal::Whiteout(target));
    }

    fn opaque(&mut self, layer: LayerIndex, dir: Vec<u8>) {
        if self.tree.judge_ancestors(&dir, layer).is_none() {
            self.tree.record_opaque(&dir, layer);
        }
        self.removals.push(Removal::Opaque(dir));
    }

    /// Ends a layer: links of the layers above that wait for a path this
    /// layer removed will never get their content.
    fn end_layer(&mut self, layer: LayerIndex) {
        for path in self.links.awaited_paths() {
            let is_removed = self.tree.has_non_directory_above(&path, layer)
                || self.removals.iter().any(|removal| match removal {
                    Removal::Whiteout(gone) => path::is_within(&path, gone),
                    Removal::Opaque(dir) => path != *dir && path::is_within(&path, dir),
                });
            if is_removed {
                let group = self.links.take_waiting_for(&path);
                self.abandon(group, &path);
            }
        }
        self.removals.clear();
        self.links.end_layer();
    }

    /// Drops the links still waiting after the bottom layer.
    fn abandon_awaited(&mut self) {
        for path in self.links.awaited_paths() {
            let group = self.links.take_waiting_for(&path);
            self.abandon(group, &path);
        }
    }

    /// Reads again the entries that links need but that their layer
    /// passed over, one pass per layer that has any.
    fn reread(&mut self, layers: &[Arc<dyn LayerSource>]) -> Result<(), FlattenError> {
        let mut rereads = self.links.take_rereads();
        rereads.sort_by_key(|r| (std::cmp::Reverse(r.layer), r.ordinal));
        for per_layer in rereads.chunk_by(|a, b| a.layer == b.layer) {
            let layer = per_layer[0].layer;
            tracing::debug!(
                layer = %self.digests[layer as usize],
                entries = per_layer.len(),
                "reading a layer again for content its hard links need"
            );
            let stream = layers[layer as usize]
                .open()
                .map_err(|e| self.read_error(layer, None, e))?;
            let mut archive = tar::Archive::new(stream);
            let entries = archive
                .entries()
                .map_err(|e| self.read_error(layer, None, e))?;
            let mut wanted = per_layer.iter().peekable();
            for (ordinal, entry) in entries.enumerate() {
                let Some(reread) = wanted.next_if(|r| r.ordinal == ordinal as u64) else {
                    if wanted.peek().is_none() {
                        break;
                    }
                    continue;
                };
                let mut entry = entry.map_err(|e| self.read_error(layer, None, e))?;
                let Some((first, rest)) = self.links.provide_first(reread.group) else {
                    continue;
                };
                let typeflag = match classify(entry.header().entry_type().as_byte(), b"") {
                    Class::Other(typeflag) => typeflag,
                    _ => b'0',
                };
                let meta = self.meta(layer, &first.path, &mut entry, typeflag)?;
                self.write(layer, &first.path, &meta, &mut entry)?;
                self.write_links(&rest, &first.path)?;
            }
        }
        Ok(())
    }

    /// Reads an entry's metadata, to be written with type `typeflag`.
    fn meta<R: Read>(
        &self,
        layer: LayerIndex,
        path: &[u8],
        entry: &mut tar::Entry<'_, R>,
        typeflag: u8,
    ) -> Result<EntryMeta, FlattenError> {
        entry_meta(entry, typeflag).map_err(|e| self.read_error(layer, Some(path), e))
    }

    fn write(
        &mut self,
        layer: LayerIndex,
        path: &[u8],
        meta: &EntryMeta,
        data: &mut dyn Read,
    ) -> Result<(), FlattenError> {
        self.write_parents(path)?;
        let mut name = path.to_vec();
        if meta.typeflag == b'5' {
            if name.is_empty() {
                name.push(b'.');
            }
            name.push(b'/');
        }
        self.out.append(&name, meta, data).map_err(|e| match e {
            CopyError::Read(e) => self.read_error(layer, Some(path), e),
            CopyError::Write(e) => FlattenError::Write(e),
        })?;
        if meta.typeflag == b'5' {
            self.dirs_written.insert(path.into());
        }
        Ok(())
    }

    /// Writes a stand-in directory entry for each ancestor of `path` that
    /// has none yet, outermost first; the root needs none.
    fn write_parents(&mut self, path: &[u8]) -> Result<(), FlattenError> {
        let mut missing = Vec::new();
        let (mut parent, _) = path::split_last(path);
        while !parent.is_empty() && !self.dirs_written.contains(parent) {
            missing.push(parent);
            (parent, _) = path::split_last(parent);
        }
        for ancestor in missing.into_iter().rev() {
            let mut name = ancestor.to_vec();
            name.push(b'/');
            self.out
                .append(&name, &EntryMeta::directory(0o755), &mut io::empty())
                .map_err(|e| match e {
                    CopyError::Read(e) | CopyError::Write(e) => FlattenError::Write(e),
                })?;
            self.dirs_written.insert(ancestor.into());
        }
        Ok(())
    }

    fn write_link(
        &mut self,
        path: &[u8],
        meta: &EntryMeta,
        target: &[u8],
    ) -> Result<(), FlattenError> {
        let link = EntryMeta {
            typeflag: b'1',
            size: 0,
            link: target.to_vec(),
            ..meta.clone()
        };
        self.write_parents(path)?;
        self.out
            .append(path, &link, &mut io::empty())
            .map_err(|e| match e {
                CopyError::Read(e) | CopyError::Write(e) => FlattenError::Write(e),
            })
    }

    fn write_links(&mut self, links: &[Waiting], target: &[u8]) -> Result<(), FlattenError> {
        for link in links {
            self.write_link(&link.path, &link.meta, target)?;
        }
        Ok(())
    }

    /// Drops an entry of the current layer that has a clean path, and the
    /// upper links that waited for it.
    fn drop_unusable(&mut self, layer: LayerIndex, path: Vec<u8>, reason: DropReason) {
        let awaited_by = self.links.take_waiting_for(&path);
        self.abandon(awaited_by, &path);
        self.drop_entry(layer, &path, reason);
        self.links.record(path, Inode::Dropped);
    }

    /// Drops the links of a group whose content never comes.
    fn abandon(&mut self, group: Option<links::GroupId>, target: &[u8]) {
        let Some(group) = group else {
            return;
        };
        let target = path::display(target);
        for link in self.links.abandon(group) {
            let reason = DropReason::DanglingHardLink {
                target: target.clone(),
            };
            self.drop_entry(link.layer, &link.path, reason);
        }
    }

    fn drop_entry(&mut self, layer: LayerIndex, path: &[u8], reason: DropReason) {
        let dropped = DroppedEntry {
            layer: self.digests[layer as usize].clone(),
            path: path::display(path),
            reason,
        };
        tracing::debug!("{dropped}");
        self.dropped.push(dropped);
    }

    fn read_error(&self, layer: LayerIndex, at: Option<&[u8]>, source: io::Error) -> FlattenError {
        FlattenError::Layer {
            layer: self.digests[layer as usize].clone(),
            at: at.map(path::display),
            source,
        }
    }
}

/// Classifies a tar type flag; `raw` is the entry's name, whose trailing
/// `/` makes an old-style (`\0`) entry a directory.
fn classify(typeflag: u8, raw: &[u8]) -> Class {
    match typeflag {
        b'5' => Class::Directory,
        b'\0' if raw.ends_with(b"/") => Class::Directory,
        b'0' | b'\0' | b'7' | b'S' => Class::Other(b'0'),
        b'1' => Class::HardLink,
        b'2' | b'3' | b'4' | b'6' => Class::Other(typeflag),
        other => Class::Unsupported(other),
    }
}

/// Reads the metadata of a layer entry, to be written with `typeflag`.
fn entry_meta<R: Read>(entry: &mut tar::Entry<'_, R>, typeflag: u8) -> io::Result<EntryMeta> {
    let header = entry.header();
    let old = header.as_old();
    let mut meta = EntryMeta {
        typeflag,
        mode: or_zero_if_empty(&old.mode, header.mode().map(u64::from))? as u32,
        uid: or_zero_if_empty(&old.uid, header.uid())?,
        gid: or_zero_if_empty(&old.gid, header.gid())?,
        mtime: or_zero_if_empty(&old.mtime, header.mtime())?,
        uname: header.username_bytes().unwrap_or_default().to_vec(),
        gname: header.groupname_bytes().unwrap_or_default().to_vec(),
        device: (0, 0),
        size: 0,
        link: Vec::new(),
        pax: Vec::new(),
    };
    match typeflag {
        b'0' if header.entry_type().is_gnu_sparse() => meta.size = header.size()?,
        b'0' => meta.size = entry.size(),
        b'2' => {
            meta.link = entry
                .link_name_bytes()
                .map(Cow::into_owned)
                .unwrap_or_default();
        }
        b'3' | b'4' => {
            let major = header.device_major().map(|n| u64::from(n.unwrap_or(0)));
            let minor = header.device_minor().map(|n| u64::from(n.unwrap_or(0)));
            let (major_field, minor_field) = header
                .as_ustar()
                .map(|u| (u.dev_major, u.dev_minor))
                .or_else(|| header.as_gnu().map(|g| (g.dev_major, g.dev_minor)))
                .unwrap_or_default();
            meta.device = (
                or_zero_if_empty(&major_field, major)? as u32,
                or_zero_if_empty(&minor_field, minor)? as u32,
            );
        }
        _ => {}
    }
    if let Some(extensions) = entry.pax_extensions()? {
        for record in extensions {
            let record = record?;
            let key = record.key_bytes();
            if key.starts_with(b"GNU.sparse.") {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "the entry is a PAX sparse file, which lkcache cannot flatten",
                ));
            }
            if !matches!(key, b"path" | b"linkpath" | b"size") {
                meta.pax.push((key.to_vec(), record.value_bytes().to_vec()));
            }
        }
    }
    Ok(meta)
}

/// Reads an empty numeric field (all NULs or spaces, as some writers leave
/// uid, gid or device numbers) as zero, as GNU tar and Go's archive/tar do.
fn or_zero_if_empty(field: &[u8], parsed: io::Result<u64>) -> io::Result<u64> {
    parsed.or_else(|error| {
        if field.iter().all(|&b| b == 0 || b == b' ') {
            Ok(0)
        } else {
            Err(error)
        }
    })
}
