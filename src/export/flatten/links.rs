//! Hard links across the layer stack, read from the top down.
//!
//! A hard link names its target as the tree had it when the link's layer
//! was applied: an earlier entry of its own layer, or else whatever the
//! layers beneath had at that path. Read top-down, the content a link needs
//! often comes later: from a lower layer, or from an entry the flattener
//! already passed over because an upper layer replaced its path. So links
//! gather in groups (one per inode) that wait for their content; the first
//! time the content is read, it is written once, under the group's first
//! path when its own path is not in the flat tree, and every other link of
//! the group becomes a hard link to that path, after it in the stream.
//!
//! Content passed over inside the same layer before a link to it appeared
//! is read again at the end, from that layer alone ([`Reread`]): rare, and
//! cheaper than keeping every replaced file in case a link turns up.

use std::collections::HashMap;

use crate::export::archive::EntryMeta;

use super::tree::LayerIndex;

/// A group of hard links to one inode.
pub(super) type GroupId = usize;

/// A hard link that waits for its inode's content.
#[derive(Debug, Clone)]
pub(super) struct Waiting {
    /// Its clean path in the flat tree.
    pub path: Vec<u8>,
    /// Its own header's metadata.
    pub meta: EntryMeta,
    /// Its layer.
    pub layer: LayerIndex,
}

/// What a path of the layer being read holds, as its own later hard links
/// see it.
#[derive(Debug, Clone)]
pub(super) enum Inode {
    /// Content written out at this path of the flat tree.
    Written(Vec<u8>),
    /// Content passed over: the entry with this ordinal in the layer.
    Skipped(u64),
    /// Content not read yet, awaited by a group.
    Group(GroupId),
    /// A directory, which no hard link may name.
    Directory,
    /// An entry that was dropped.
    Dropped,
}

/// Where a hard link's content is, once resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Resolved {
    /// Written at this path: link to it.
    Written(Vec<u8>),
    /// Not read yet: wait in this group.
    Group(GroupId),
    /// The target is a directory.
    Directory,
    /// The target was dropped.
    Dropped,
}

/// Content to read a second time from a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Reread {
    /// The layer.
    pub layer: LayerIndex,
    /// The entry's ordinal in it.
    pub ordinal: u64,
    /// The group that waits for it.
    pub group: GroupId,
}

#[derive(Debug, Default)]
struct Group {
    carrier: Option<Vec<u8>>,
    waiting: Vec<Waiting>,
    merged_into: Option<GroupId>,
}

/// The hard link state of a flattening.
#[derive(Debug, Default)]
pub(super) struct Links {
    groups: Vec<Group>,
    /// Groups of upper layers that wait for a path as the layers below the
    /// current one have it.
    below: HashMap<Vec<u8>, GroupId>,
    /// Groups of the current layer that wait for a path of the layers
    /// beneath it.
    from_current: HashMap<Vec<u8>, GroupId>,
    /// The current layer's non-directory paths.
    inodes: HashMap<Vec<u8>, Inode>,
    rereads: Vec<Reread>,
}

impl Links {
    /// Ends a layer: its own paths are forgotten, and its links to lower
    /// paths join those of the layers above.
    pub(super) fn end_layer(&mut self) {
        self.inodes.clear();
        for (path, group) in std::mem::take(&mut self.from_current) {
            match self.below.get(&path) {
                Some(&existing) => {
                    // Nothing of this layer was at `path`: both wait for the
                    // same content.
                    self.merge(group, existing);
                }
                None => {
                    self.below.insert(path, group);
                }
            }
        }
    }

    /// Takes the group of upper links that wait for `path`, now that the
    /// current layer has an entry there.
    pub(super) fn take_waiting_for(&mut self, path: &[u8]) -> Option<GroupId> {
        self.below.remove(path).map(|g| self.find(g))
    }

    /// Records what the current layer has at `path`.
    pub(super) fn record(&mut self, path: Vec<u8>, inode: Inode) {
        self.inodes.insert(path, inode);
    }

    /// Resolves a hard link of `layer` to `target`.
    pub(super) fn resolve(&mut self, target: &[u8], layer: LayerIndex) -> Resolved {
        let inode = self.inodes.get(target).cloned();
        match inode {
            Some(Inode::Written(path)) => Resolved::Written(path),
            Some(Inode::Group(group)) => self.resolve_group(group),
            Some(Inode::Skipped(ordinal)) => {
                let group = self.new_group();
                self.rereads.push(Reread {
                    layer,
                    ordinal,
                    group,
                });
                self.inodes.insert(target.to_vec(), Inode::Group(group));
                Resolved::Group(group)
            }
            Some(Inode::Directory) => Resolved::Directory,
            Some(Inode::Dropped) => Resolved::Dropped,
            None => {
                let group = match self.from_current.get(target) {
                    Some(&group) => group,
                    None => {
                        let group = self.new_group();
                        self.from_current.insert(target.to_vec(), group);
                        group
                    }
                };
                self.resolve_group(group)
            }
        }
    }

    /// Adds a link to a group that has no content yet.
    pub(super) fn wait(&mut self, group: GroupId, link: Waiting) {
        let group = self.find(group);
        debug_assert!(self.groups[group].carrier.is_none());
        self.groups[group].waiting.push(link);
    }

    /// Moves the links of `from` into `into`; returns them when `into` has
    /// its content already, so that they are written as links to it now.
    pub(super) fn merge(&mut self, from: GroupId, into: GroupId) -> Vec<Waiting> {
        let (from, into) = (self.find(from), self.find(into));
        if from == into {
            return Vec::new();
        }
        let moved = std::mem::take(&mut self.groups[from].waiting);
        self.groups[from].merged_into = Some(into);
        if self.groups[into].carrier.is_some() {
            moved
        } else {
            self.groups[into].waiting.extend(moved);
            Vec::new()
        }
    }

    /// Gives a group its content, written at `path`; returns the links to
    /// write after it.
    pub(super) fn provide_at(&mut self, group: GroupId, path: Vec<u8>) -> Vec<Waiting> {
        let group = self.find(group);
        self.groups[group].carrier = Some(path);
        std::mem::take(&mut self.groups[group].waiting)
    }

    /// Gives a group its content, to be written under its first link's
    /// path; returns that link and the others, or `None` when no link
    /// waits.
    pub(super) fn provide_first(&mut self, group: GroupId) -> Option<(Waiting, Vec<Waiting>)> {
        let group = self.find(group);
        let mut waiting = std::mem::take(&mut self.groups[group].waiting);
        if waiting.is_empty() {
            return None;
        }
        let first = waiting.remove(0);
        self.groups[group].carrier = Some(first.path.clone());
        Some((first, waiting))
    }

    /// Takes the links of a group whose content will never come.
    pub(super) fn abandon(&mut self, group: GroupId) -> Vec<Waiting> {
        let group = self.find(group);
        std::mem::take(&mut self.groups[group].waiting)
    }

    /// Returns the paths that upper links still wait for.
    pub(super) fn awaited_paths(&self) -> Vec<Vec<u8>> {
        self.below.keys().cloned().collect()
    }

    /// Takes the entries to read a second time.
    pub(super) fn take_rereads(&mut self) -> Vec<Reread> {
        std::mem::take(&mut self.rereads)
    }

    fn resolve_group(&mut self, group: GroupId) -> Resolved {
        let group = self.find(group);
        match &self.groups[group].carrier {
            Some(path) => Resolved::Written(path.clone()),
            None => Resolved::Group(group),
        }
    }

    fn new_group(&mut self) -> GroupId {
        self.groups.push(Group::default());
        self.groups.len() - 1
    }

    fn find(&self, mut group: GroupId) -> GroupId {
        while let Some(next) = self.groups[group].merged_into {
            group = next;
        }
        group
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(path: &str, layer: LayerIndex) -> Waiting {
        Waiting {
            path: path.as_bytes().to_vec(),
            meta: EntryMeta::file(0),
            layer,
        }
    }

    #[test]
    fn resolves_links_within_a_layer_and_to_lower_layers() {
        let mut links = Links::default();
        links.record(b"a".to_vec(), Inode::Written(b"a".to_vec()));
        links.record(b"d".to_vec(), Inode::Directory);
        assert_eq!(links.resolve(b"a", 2), Resolved::Written(b"a".to_vec()));
        assert_eq!(links.resolve(b"d", 2), Resolved::Directory);

        let Resolved::Group(lower) = links.resolve(b"lower", 2) else {
            panic!("a link to a path the layer lacks waits for the layers below");
        };
        links.wait(lower, waiting("l1", 2));
        assert_eq!(links.resolve(b"lower", 2), Resolved::Group(lower));
        links.end_layer();

        let group = links.take_waiting_for(b"lower").expect("awaited");
        let written = links.provide_at(group, b"lower".to_vec());
        assert_eq!(written.len(), 1);
        assert_eq!(written[0].path, b"l1");
    }

    #[test]
    fn rereads_content_its_own_layer_passed_over() {
        let mut links = Links::default();
        links.record(b"old".to_vec(), Inode::Skipped(7));
        let Resolved::Group(group) = links.resolve(b"old", 3) else {
            panic!("skipped content needs a group");
        };
        links.wait(group, waiting("keep", 3));
        assert_eq!(
            links.take_rereads(),
            [Reread {
                layer: 3,
                ordinal: 7,
                group
            }]
        );
        let (first, rest) = links.provide_first(group).expect("one link waits");
        assert_eq!(first.path, b"keep");
        assert!(rest.is_empty());
    }

    #[test]
    fn merges_groups_that_wait_for_the_same_lower_path() {
        let mut links = Links::default();
        let Resolved::Group(upper) = links.resolve(b"t", 2) else {
            panic!("waits");
        };
        links.wait(upper, waiting("u", 2));
        links.end_layer();
        let Resolved::Group(middle) = links.resolve(b"t", 1) else {
            panic!("waits");
        };
        links.wait(middle, waiting("m", 1));
        links.end_layer();

        let group = links.take_waiting_for(b"t").expect("awaited");
        let written = links.provide_at(group, b"t".to_vec());
        let paths: Vec<&[u8]> = written.iter().map(|w| w.path.as_slice()).collect();
        assert_eq!(paths, [b"u".as_slice(), b"m".as_slice()]);
    }
}
