//! Per-blob progress bars on stderr, for a terminal.

use std::collections::HashMap;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use lkcache::Reference;
use lkcache::digest::Digest;
use lkcache::manifest::Descriptor;
use lkcache::pull::Progress;

/// One bar per blob in flight.
pub(super) struct BlobBars {
    multi: MultiProgress,
    bars: Mutex<HashMap<Digest, ProgressBar>>,
    style: ProgressStyle,
}

impl BlobBars {
    pub(super) fn new() -> BlobBars {
        let style = ProgressStyle::with_template(
            "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
        )
        .expect("the template is valid")
        .progress_chars("=> ");
        BlobBars {
            multi: MultiProgress::new(),
            bars: Mutex::new(HashMap::new()),
            style,
        }
    }
}

impl Progress for BlobBars {
    fn blob_started(&self, reference: &Reference, blob: &Descriptor) {
        let bar = self.multi.add(ProgressBar::new(blob.size));
        bar.set_style(self.style.clone());
        bar.set_prefix(format!("{} {}", reference.familiar(), blob.digest.short()));
        self.bars
            .lock()
            .expect("lock poisoned")
            .insert(blob.digest.clone(), bar);
    }

    fn blob_advanced(&self, _reference: &Reference, blob: &Descriptor, bytes: u64) {
        if let Some(bar) = self.bars.lock().expect("lock poisoned").get(&blob.digest) {
            bar.set_position(bytes);
        }
    }

    fn blob_finished(&self, _reference: &Reference, blob: &Descriptor, _is_ok: bool) {
        if let Some(bar) = self
            .bars
            .lock()
            .expect("lock poisoned")
            .remove(&blob.digest)
        {
            bar.finish_and_clear();
        }
    }
}
