//! What the layers above have decided about each path: the state that lets
//! the flattener read layers from the top down and still give each path the
//! content the bottom-up application of the layers would.
//!
//! Layers are numbered from the bottom (0) and read from the top; an entry
//! of layer `L` at path `P` survives into the flat tree unless a layer above
//! `L` has an entry at `P`, or removes `P` or an ancestor of `P` (a
//! whiteout, an opaque directory marker, or a non-directory put where a
//! directory was). Whiteouts and opaque markers act on the layers below
//! their own only (image-spec, layer.md): an entry beside its own layer's
//! whiteout stays.
//!
//! Two cases cannot be decided so simply, and are reported instead:
//! an entry beneath a non-directory that its own layer put there (a path
//! through a symlink), and a non-directory of a lower layer at a path where
//! upper layers already put entries beneath it (a lower layer plants
//! `evil -> /etc`, an upper one writes `evil/passwd`).

use std::collections::HashMap;

use super::path;

/// A layer's position in the stack, counted from the bottom.
pub(super) type LayerIndex = u32;

/// What the state says about an entry of some layer at some path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verdict {
    /// The entry is in the flat tree.
    Visible,
    /// A layer above replaced or removed it.
    Hidden,
    /// Its own layer put a non-directory at the ancestor `parent`: the
    /// entry would be written through a symlink (or into a file).
    ThroughNonDirectory {
        /// The ancestor that is not a directory.
        parent: Vec<u8>,
    },
    /// The entry is a non-directory, but layers above (or its own, earlier)
    /// put entries beneath its path: `child`, of layer `layer`, for one.
    HasEntriesBeneath {
        /// One entry that lies beneath the path.
        child: Vec<u8>,
        /// The layer of `child`.
        layer: LayerIndex,
    },
}

/// What was decided about one path.
#[derive(Debug, Default)]
struct Node {
    /// The topmost layer with an entry (or whiteout) exactly here: lower
    /// layers' entries at this path are hidden.
    top: Option<LayerIndex>,
    /// The topmost layer that hides everything beneath this path from the
    /// layers below it: by a whiteout, an opaque marker, or a
    /// non-directory.
    hides_beneath: Option<LayerIndex>,
    /// The latest entry seen here: its layer, and whether it is a
    /// non-directory.
    latest: Option<(LayerIndex, bool)>,
    /// The first entry written beneath this path, with its layer.
    first_child: Option<(LayerIndex, Box<[u8]>)>,
}

impl Node {
    /// Notes an entry of `layer` here.
    fn see(&mut self, layer: LayerIndex, is_dir: bool) {
        self.top.get_or_insert(layer);
        self.latest = Some((layer, !is_dir));
        if !is_dir {
            self.hides_beneath.get_or_insert(layer);
        }
    }
}

/// The state of every path that some layer has decided.
#[derive(Debug, Default)]
pub(super) struct Tree {
    nodes: HashMap<Box<[u8]>, Node>,
}

impl Tree {
    /// Judges an entry (`is_dir` tells whether it is a directory) of
    /// `layer` at the clean `path`.
    pub(super) fn judge(&self, path: &[u8], layer: LayerIndex, is_dir: bool) -> Verdict {
        if let Some(verdict) = self.judge_ancestors(path, layer) {
            return verdict;
        }
        let Some(node) = self.nodes.get(path) else {
            return Verdict::Visible;
        };
        if node.top.is_some_and(|top| top > layer) {
            return Verdict::Hidden;
        }
        match &node.first_child {
            Some((child_layer, child)) if !is_dir => Verdict::HasEntriesBeneath {
                child: child.to_vec(),
                layer: *child_layer,
            },
            _ => Verdict::Visible,
        }
    }

    /// Judges only what the ancestors of `path` say, for whiteouts and
    /// opaque markers, which act beneath a path that may itself be decided.
    pub(super) fn judge_ancestors(&self, path: &[u8], layer: LayerIndex) -> Option<Verdict> {
        for ancestor in path::ancestors(path) {
            let Some(node) = self.nodes.get(ancestor) else {
                continue;
            };
            if node.hides_beneath.is_some_and(|hider| hider > layer) {
                return Some(Verdict::Hidden);
            }
            if node.latest == Some((layer, true)) {
                return Some(Verdict::ThroughNonDirectory {
                    parent: ancestor.to_vec(),
                });
            }
        }
        None
    }

    /// Records an entry of `layer` at `path` that is written out.
    pub(super) fn record_written(&mut self, path: &[u8], layer: LayerIndex, is_dir: bool) {
        let node = self.nodes.entry(path.into()).or_default();
        node.see(layer, is_dir);
        self.mark_ancestors(path, layer);
    }

    /// Records an entry that is not written (hidden, or replaced by a
    /// directory): as a non-directory it still removes what lower layers
    /// have beneath it. A path without a node was hidden by an ancestor,
    /// which hides everything beneath it already, so no node is made.
    pub(super) fn record_seen(&mut self, path: &[u8], layer: LayerIndex, is_dir: bool) {
        if let Some(node) = self.nodes.get_mut(path) {
            node.see(layer, is_dir);
        }
    }

    /// Records a whiteout of `layer` that removes `path` from the layers
    /// below.
    pub(super) fn record_whiteout(&mut self, path: &[u8], layer: LayerIndex) {
        let node = self.nodes.entry(path.into()).or_default();
        node.top.get_or_insert(layer);
        node.hides_beneath.get_or_insert(layer);
    }

    /// Records an opaque marker of `layer` that hides the contents of `dir`
    /// in the layers below.
    pub(super) fn record_opaque(&mut self, dir: &[u8], layer: LayerIndex) {
        let node = self.nodes.entry(dir.into()).or_default();
        node.hides_beneath.get_or_insert(layer);
    }

    /// Tells whether `layer`, just read, put a non-directory at a proper
    /// ancestor of `path`: `path` then no longer exists beneath it.
    pub(super) fn has_non_directory_above(&self, path: &[u8], layer: LayerIndex) -> bool {
        path::ancestors(path).any(|ancestor| {
            self.nodes
                .get(ancestor)
                .is_some_and(|node| node.latest == Some((layer, true)))
        })
    }

    /// Notes, on every ancestor that has none yet, that `path` lies
    /// beneath it. An ancestor that has one already has ancestors that
    /// have one too, so the walk stops there.
    fn mark_ancestors(&mut self, path: &[u8], layer: LayerIndex) {
        let ancestors: Vec<&[u8]> = path::ancestors(path).collect();
        for ancestor in ancestors.into_iter().rev() {
            let node = self.nodes.entry(ancestor.into()).or_default();
            if node.first_child.is_some() {
                break;
            }
            node.first_child = Some((layer, path.into()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One step of a table: what a layer has at a path.
    #[derive(Clone, Copy)]
    enum Op {
        /// A directory written out (when visible).
        Dir(LayerIndex, &'static str),
        /// A non-directory written out (when visible).
        File(LayerIndex, &'static str),
        Whiteout(LayerIndex, &'static str),
        Opaque(LayerIndex, &'static str),
    }

    /// Applies the steps, top layer first, as the flattener does, and
    /// returns each entry's verdict.
    fn run(ops: &[Op]) -> Vec<String> {
        let mut tree = Tree::default();
        let mut verdicts = Vec::new();
        for op in ops {
            let verdict = match *op {
                Op::Dir(layer, p) | Op::File(layer, p) => {
                    let is_dir = matches!(op, Op::Dir(..));
                    let verdict = tree.judge(p.as_bytes(), layer, is_dir);
                    if verdict == Verdict::Visible {
                        tree.record_written(p.as_bytes(), layer, is_dir);
                    } else if verdict == Verdict::Hidden {
                        tree.record_seen(p.as_bytes(), layer, is_dir);
                    }
                    verdict
                }
                Op::Whiteout(layer, p) => {
                    let verdict = tree.judge_ancestors(p.as_bytes(), layer);
                    if verdict.is_none() {
                        tree.record_whiteout(p.as_bytes(), layer);
                    }
                    verdict.unwrap_or(Verdict::Visible)
                }
                Op::Opaque(layer, p) => {
                    let verdict = tree.judge_ancestors(p.as_bytes(), layer);
                    if verdict.is_none() {
                        tree.record_opaque(p.as_bytes(), layer);
                    }
                    verdict.unwrap_or(Verdict::Visible)
                }
            };
            verdicts.push(match verdict {
                Verdict::Visible => "visible".to_string(),
                Verdict::Hidden => "hidden".to_string(),
                Verdict::ThroughNonDirectory { parent } => {
                    format!("through {}", String::from_utf8_lossy(&parent))
                }
                Verdict::HasEntriesBeneath { child, layer } => {
                    format!("beneath {} {layer}", String::from_utf8_lossy(&child))
                }
            });
        }
        verdicts
    }

    #[test]
    fn decides_each_entry_as_bottom_up_application_would() {
        use Op::*;
        let cases: &[(&str, &[Op], &[&str])] = &[
            (
                "an upper file replaces a lower one",
                &[File(1, "a"), File(0, "a")],
                &["visible", "hidden"],
            ),
            (
                "an upper directory keeps the lower one's contents",
                &[Dir(1, "d"), Dir(0, "d"), File(0, "d/x")],
                &["visible", "hidden", "visible"],
            ),
            (
                "a whiteout removes the path and everything beneath it",
                &[
                    Whiteout(1, "a"),
                    File(0, "a"),
                    File(0, "a/b"),
                    File(0, "ab"),
                ],
                &["visible", "hidden", "hidden", "visible"],
            ),
            (
                "a whiteout leaves its own layer's entry",
                &[Whiteout(1, "a"), File(1, "a"), File(0, "a")],
                &["visible", "visible", "hidden"],
            ),
            (
                "an opaque directory keeps its own entry and the lower directory's metadata",
                &[
                    Opaque(1, "d"),
                    File(1, "d/new"),
                    Dir(0, "d"),
                    File(0, "d/old"),
                    File(0, "e"),
                ],
                &["visible", "visible", "visible", "hidden", "visible"],
            ),
            (
                "an opaque root hides every lower entry",
                &[Opaque(1, ""), File(1, "a"), File(0, "b"), Dir(0, "")],
                &["visible", "visible", "hidden", "visible"],
            ),
            (
                "a middle whiteout beneath an upper directory removes lower contents",
                &[
                    Dir(2, "d"),
                    File(2, "d/top"),
                    Whiteout(1, "d"),
                    Dir(0, "d"),
                    File(0, "d/old"),
                ],
                &["visible", "visible", "visible", "hidden", "hidden"],
            ),
            (
                "a middle non-directory beneath an upper directory removes lower contents",
                &[Dir(2, "d"), File(1, "d"), File(0, "d/old")],
                &["visible", "hidden", "hidden"],
            ),
            (
                "an upper symlink hides a lower directory's contents",
                &[File(1, "lib"), Dir(0, "lib"), File(0, "lib/x")],
                &["visible", "hidden", "hidden"],
            ),
            (
                "an entry beneath its own layer's symlink is through a non-directory",
                &[File(1, "evil"), File(1, "evil/passwd")],
                &["visible", "through evil"],
            ),
            (
                "a lower symlink beneath upper entries is reported",
                &[File(1, "evil/passwd"), File(0, "evil")],
                &["visible", "beneath evil/passwd 1"],
            ),
            (
                "a lower directory beneath upper entries is fine",
                &[File(1, "d/f"), Dir(0, "d")],
                &["visible", "visible"],
            ),
            (
                "a whiteout beneath an upper whiteout does nothing more",
                &[Whiteout(2, "a"), Whiteout(1, "a/b"), File(0, "a/b")],
                &["visible", "hidden", "hidden"],
            ),
        ];
        for (name, ops, expected) in cases {
            assert_eq!(run(ops), *expected, "{name}");
        }
    }

    #[test]
    fn knows_when_a_layer_put_a_non_directory_above_a_path() {
        let mut tree = Tree::default();
        tree.record_written(b"d", 2, true);
        tree.record_seen(b"d", 1, false);
        tree.record_seen(b"unknown", 1, false);
        tree.record_written(b"e", 1, true);
        assert!(tree.has_non_directory_above(b"d/x", 1));
        assert!(!tree.has_non_directory_above(b"d/x", 0));
        assert!(!tree.has_non_directory_above(b"e/x", 1));
        assert!(!tree.has_non_directory_above(b"d", 1));
        assert!(!tree.has_non_directory_above(b"unknown/x", 1));
    }
}
