//! Pushing images from the cache to a registry.
//!
//! An image goes up as the cache holds it, bottom-up: blobs first, then the
//! platform manifests, then the index or manifest under its tag, each
//! manifest with its exact bytes so that every digest stays the same. Only
//! what the registry lacks is sent: each blob is asked for with `HEAD`,
//! mounted from another repository of the same registry when a cached name
//! shows it came from there, and uploaded otherwise, streamed from disk.
//! An index whose platforms are not all cached cannot go up as it is; with
//! `--platform` a new index of just the named platforms is made, pushed and
//! recorded in the cache under the remote name.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::digest::Digest;
use crate::manifest::{self, Descriptor, ImageIndex, Manifest};
use crate::platform::Platform;
use crate::reference::Reference;
use crate::registry::{Client, Mount, RegistryError};
use crate::store::{CachedImage, Holding, Store, StoreError};

/// Why a push failed.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The registry refused or failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The cache could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The name is not cached.
    #[error("`{0}` is not in the cache; pull or import it first")]
    NotCached(String),
    /// The index names platforms the cache does not hold.
    #[error(
        "`{name}` cannot be pushed as it is: the cache lacks {missing} of its index; \
         push the platforms it holds ({held}) as a new index with --platform"
    )]
    Incomplete {
        /// The name.
        name: String,
        /// The platforms (or attestations) missing.
        missing: String,
        /// The platforms held completely.
        held: String,
    },
    /// A platform asked for with `--platform` that the cache lacks.
    #[error("`{name}` is not cached for {platform} (cached: {held})")]
    PlatformNotHeld {
        /// The name.
        name: String,
        /// The platform asked for.
        platform: String,
        /// The platforms held completely.
        held: String,
    },
    /// `--with-arch-tags` for a remote name without a tag.
    #[error("`{0}` has no tag to derive architecture tags from; give a tag with --remote-name")]
    NoTagForArchTags(String),
}

/// How to push.
#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    /// Push under this name instead of the cached one.
    pub remote_name: Option<Reference>,
    /// Push a new index of only these platforms.
    pub platforms: Vec<Platform>,
    /// Also tag each platform's manifest as `TAG-ARCH[-VARIANT]`.
    pub with_arch_tags: bool,
    /// Push even when the registry already serves the same digest.
    pub force: bool,
    /// How many blobs to send at once; at least one.
    pub parallel_blobs: usize,
}

/// What a push did.
#[derive(Debug, Clone)]
pub struct PushReport {
    /// The name pushed under.
    pub remote: String,
    /// The digest of the root pushed.
    pub digest: Digest,
    /// Whether the registry already served it, so nothing was sent.
    pub is_up_to_date: bool,
    /// Whether a new index was made from the cached platforms.
    pub is_new_index: bool,
    /// Blobs sent.
    pub uploaded: usize,
    /// Blobs mounted from another repository.
    pub mounted: usize,
    /// Blobs the registry had.
    pub present: usize,
    /// Architecture tags pushed.
    pub arch_tags: Vec<String>,
}

/// The manifests one push sends: platform manifests (with their bytes)
/// and the root.
struct Plan {
    root: Descriptor,
    root_bytes: Vec<u8>,
    children: Vec<(Descriptor, Vec<u8>)>,
    is_new_index: bool,
}

/// Pushes the image cached under `name`.
pub fn push(
    store: &Store,
    client: &Client,
    name: &Reference,
    options: &PushOptions,
) -> Result<PushReport, PushError> {
    let local = name.to_string();
    let cached = store
        .cached(&local)?
        .ok_or_else(|| PushError::NotCached(local.clone()))?;
    let remote = options.remote_name.clone().unwrap_or_else(|| name.clone());
    let plan = plan(store, &cached, options)?;
    let mut report = PushReport {
        remote: remote.to_string(),
        digest: plan.root.digest.clone(),
        is_up_to_date: false,
        is_new_index: plan.is_new_index,
        uploaded: 0,
        mounted: 0,
        present: 0,
        arch_tags: Vec::new(),
    };
    if !options.force && remote_digest(client, &remote)? == Some(plan.root.digest.clone()) {
        report.is_up_to_date = true;
        return Ok(report);
    }

    let blobs = blobs_of(&plan)?;
    push_blobs(
        store,
        client,
        &remote,
        &blobs,
        options.parallel_blobs,
        &mut report,
    )?;
    for (descriptor, bytes) in &plan.children {
        client.put_manifest(
            &remote,
            &descriptor.digest.to_string(),
            &descriptor.media_type,
            bytes,
        )?;
    }
    let target = remote
        .tag()
        .map_or_else(|| plan.root.digest.to_string(), str::to_string);
    client.put_manifest(&remote, &target, &plan.root.media_type, &plan.root_bytes)?;
    if options.with_arch_tags {
        report.arch_tags = push_arch_tags(store, client, &remote, &plan)?;
    }
    if plan.is_new_index {
        store.set_name(&remote.to_string(), &plan.root)?;
    }
    Ok(report)
}

/// Returns the digest the registry serves for `remote`, or `None` when it
/// has nothing under that name.
fn remote_digest(client: &Client, remote: &Reference) -> Result<Option<Digest>, PushError> {
    match client.current_digest(remote) {
        Ok(digest) => Ok(Some(digest)),
        Err(RegistryError::NotFound { .. }) => Ok(None),
        Err(other) => Err(other.into()),
    }
}

/// Decides which manifests go up, making a new index if asked to.
fn plan(store: &Store, cached: &CachedImage, options: &PushOptions) -> Result<Plan, PushError> {
    let root_bytes = store.read_blob(&cached.root)?;
    let Manifest::Index(index) = &cached.manifest else {
        return Ok(Plan {
            root: cached.root.clone(),
            root_bytes,
            children: Vec::new(),
            is_new_index: false,
        });
    };
    let held: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(|d| store.is_complete(d))
        .collect();
    let held_names = describe(held.iter().filter(|d| d.attests().is_none()).copied());
    if !options.platforms.is_empty() {
        let chosen = choose(&cached.name, index, &held, &options.platforms, &held_names)?;
        return new_index(store, &cached.root, index, chosen);
    }
    let missing: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(|d| !held.contains(d))
        .collect();
    if !missing.is_empty() {
        return Err(PushError::Incomplete {
            name: cached.name.clone(),
            missing: describe(missing.into_iter()),
            held: held_names,
        });
    }
    Ok(Plan {
        root: cached.root.clone(),
        root_bytes,
        children: read_all(store, held)?,
        is_new_index: false,
    })
}

/// Picks the held entries for the wanted platforms, with their attestations.
fn choose<'a>(
    name: &str,
    index: &'a ImageIndex,
    held: &[&'a Descriptor],
    wanted: &[Platform],
    held_names: &str,
) -> Result<Vec<&'a Descriptor>, PushError> {
    let mut chosen: Vec<&Descriptor> = Vec::new();
    for platform in wanted {
        let candidates = held
            .iter()
            .filter(|d| d.attests().is_none())
            .filter_map(|d| d.platform.as_ref());
        let Some(best) = platform.select(candidates) else {
            return Err(PushError::PlatformNotHeld {
                name: name.to_string(),
                platform: platform.to_string(),
                held: held_names.to_string(),
            });
        };
        let entry = held
            .iter()
            .find(|d| d.platform.as_ref() == Some(best))
            .expect("select returns one of the candidates");
        if !chosen.contains(entry) {
            chosen.push(entry);
            let attestations = index
                .attestations_of(&entry.digest)
                .filter(|a| held.contains(a));
            chosen.extend(attestations);
        }
    }
    Ok(chosen)
}

/// Makes and stores an index of `chosen`, keeping the original's media
/// type and other fields.
fn new_index(
    store: &Store,
    root: &Descriptor,
    index: &ImageIndex,
    chosen: Vec<&Descriptor>,
) -> Result<Plan, PushError> {
    let document = ImageIndex {
        manifests: chosen.iter().map(|d| (*d).clone()).collect(),
        ..index.clone()
    };
    let bytes = serde_json::to_vec(&document).expect("an index always serialises");
    let descriptor = Descriptor::of_bytes(&root.media_type, &bytes);
    store.write_blob(&descriptor, &bytes)?;
    Ok(Plan {
        root: descriptor,
        root_bytes: bytes,
        children: read_all(store, chosen)?,
        is_new_index: true,
    })
}

fn read_all(
    store: &Store,
    descriptors: Vec<&Descriptor>,
) -> Result<Vec<(Descriptor, Vec<u8>)>, PushError> {
    descriptors
        .into_iter()
        .map(|d| Ok((d.clone(), store.read_blob(d)?)))
        .collect()
}

/// Lists the config and layers of every manifest of the plan, each once.
fn blobs_of(plan: &Plan) -> Result<Vec<Descriptor>, PushError> {
    let manifests: Vec<(&Descriptor, &[u8])> = if plan.children.is_empty() {
        vec![(&plan.root, &plan.root_bytes)]
    } else {
        plan.children
            .iter()
            .map(|(d, b)| (d, b.as_slice()))
            .collect()
    };
    let mut seen = HashSet::new();
    let mut blobs = Vec::new();
    for (descriptor, bytes) in manifests {
        let parsed = manifest::parse(bytes, &descriptor.media_type).map_err(|source| {
            StoreError::Manifest {
                digest: descriptor.digest.clone(),
                source,
            }
        })?;
        if let (Manifest::Image(image), _) = parsed {
            blobs.extend(
                image
                    .blobs()
                    .filter(|b| seen.insert(b.digest.clone()))
                    .cloned(),
            );
        }
    }
    Ok(blobs)
}

/// Sends every blob the registry lacks, a few at a time.
fn push_blobs(
    store: &Store,
    client: &Client,
    remote: &Reference,
    blobs: &[Descriptor],
    parallel: usize,
    report: &mut PushReport,
) -> Result<(), PushError> {
    let sources = mount_sources(store, remote)?;
    let queue = Mutex::new(blobs.iter().collect::<Vec<_>>());
    let counts = [
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    ];
    let failure = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..parallel.max(1) {
            scope.spawn(|| {
                while let Some(blob) = queue.lock().expect("lock poisoned").pop() {
                    match push_blob(store, client, remote, blob, sources.get(&blob.digest)) {
                        Ok(sent) => counts[sent as usize].fetch_add(1, Ordering::Relaxed),
                        Err(err) => {
                            failure.lock().expect("lock poisoned").get_or_insert(err);
                            queue.lock().expect("lock poisoned").clear();
                            break;
                        }
                    };
                }
            });
        }
    });
    if let Some(err) = failure.into_inner().expect("lock poisoned") {
        return Err(err);
    }
    report.present = counts[Sent::Present as usize].load(Ordering::Relaxed);
    report.mounted = counts[Sent::Mounted as usize].load(Ordering::Relaxed);
    report.uploaded = counts[Sent::Uploaded as usize].load(Ordering::Relaxed);
    Ok(())
}

/// How many times one blob upload is started before the push fails.
const UPLOAD_ATTEMPTS: u32 = 3;

/// The pause before an upload starts again, growing with each attempt.
const UPLOAD_PAUSE: std::time::Duration = std::time::Duration::from_millis(500);

/// How one blob reached the registry.
#[derive(Debug, Clone, Copy)]
enum Sent {
    Present = 0,
    Mounted = 1,
    Uploaded = 2,
}

fn push_blob(
    store: &Store,
    client: &Client,
    remote: &Reference,
    blob: &Descriptor,
    source: Option<&String>,
) -> Result<Sent, PushError> {
    if client.has_remote_blob(remote, &blob.digest)? {
        return Ok(Sent::Present);
    }
    let mut location = None;
    if let Some(source) = source {
        match client.mount_blob(remote, &blob.digest, source)? {
            Mount::Mounted => return Ok(Sent::Mounted),
            Mount::Refused { location: offered } => {
                tracing::debug!("mount of {} from {source} refused; uploading", blob.digest);
                location = Some(offered);
            }
        }
    }
    upload_with_retries(store, client, remote, blob, location)?;
    Ok(Sent::Uploaded)
}

/// Uploads a blob; an upload streams its bytes once, so a transient failure
/// starts the whole upload again, a few times at most.
fn upload_with_retries(
    store: &Store,
    client: &Client,
    remote: &Reference,
    blob: &Descriptor,
    mut location: Option<String>,
) -> Result<(), PushError> {
    let mut attempt = 1;
    loop {
        let file = store.open_blob(&blob.digest)?;
        match client.upload_blob(remote, blob, file, location.take()) {
            Err(err) if err.is_transient() && attempt < UPLOAD_ATTEMPTS => {
                tracing::debug!(
                    "upload of {} failed ({err}); starting it again",
                    blob.digest
                );
                std::thread::sleep(UPLOAD_PAUSE * attempt);
                attempt += 1;
            }
            result => return Ok(result?),
        }
    }
}

/// Maps each blob that a cached name of the same registry reaches to that
/// name's repository: where a mount can take it from.
fn mount_sources(store: &Store, remote: &Reference) -> Result<HashMap<Digest, String>, PushError> {
    let mut sources = HashMap::new();
    for root in store.read_index()?.manifests {
        let Some(reference) = root.ref_name().and_then(|n| n.parse::<Reference>().ok()) else {
            continue;
        };
        if reference.domain() != remote.domain() || reference.repository() == remote.repository() {
            continue;
        }
        for reached in store.reach(&root) {
            if matches!(reached.holding, Holding::Present) {
                sources
                    .entry(reached.descriptor.digest)
                    .or_insert_with(|| reference.repository().to_string());
            }
        }
    }
    Ok(sources)
}

/// Tags each platform manifest as `TAG-ARCH[-VARIANT]`.
fn push_arch_tags(
    store: &Store,
    client: &Client,
    remote: &Reference,
    plan: &Plan,
) -> Result<Vec<String>, PushError> {
    let tag = remote
        .tag()
        .ok_or_else(|| PushError::NoTagForArchTags(remote.to_string()))?;
    let mut tags = Vec::new();
    for (descriptor, bytes, platform) in platform_manifests(store, remote, plan)? {
        let mut arch_tag = format!("{tag}-{}", platform.architecture);
        if let Some(variant) = &platform.variant {
            arch_tag.push_str(&format!("-{variant}"));
        }
        client.put_manifest(remote, &arch_tag, &descriptor.media_type, bytes)?;
        tags.push(arch_tag);
    }
    Ok(tags)
}

/// A manifest of a plan, its bytes, and the platform it runs on.
type PlatformManifest<'p> = (&'p Descriptor, &'p [u8], Platform);

/// Returns each runnable manifest of the plan with its platform: from the
/// index entries, or from the config of a single image.
fn platform_manifests<'p>(
    store: &Store,
    remote: &Reference,
    plan: &'p Plan,
) -> Result<Vec<PlatformManifest<'p>>, PushError> {
    if plan.children.is_empty() {
        let image = store.image_at(&remote.to_string(), &plan.root)?;
        let platform = image.config.platform();
        return Ok(platform
            .map(|p| (&plan.root, plan.root_bytes.as_slice(), p))
            .into_iter()
            .collect());
    }
    Ok(plan
        .children
        .iter()
        .filter(|(d, _)| d.attests().is_none())
        .filter_map(|(d, bytes)| Some((d, bytes.as_slice(), d.platform.as_ref()?.normalize())))
        .collect())
}

/// Lists descriptors for a message: their platforms, or their digests.
fn describe<'a>(descriptors: impl Iterator<Item = &'a Descriptor>) -> String {
    let names: Vec<String> = descriptors
        .map(|d| match (&d.platform, d.attests()) {
            (_, Some(subject)) => format!("the attestation of {subject}"),
            (Some(platform), None) => platform.normalize().to_string(),
            (None, None) => d.digest.to_string(),
        })
        .collect();
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}
