//! The push side of the Distribution API: asking whether a blob is there,
//! mounting it from another repository of the same registry, uploading it
//! (in one request when small, in chunks when large, always streamed from
//! disk), and putting manifests with their exact bytes.

use std::fs::File;
use std::io::Read;

use ureq::http::StatusCode;

use crate::digest::Digest;
use crate::manifest::Descriptor;
use crate::reference::Reference;

use super::transport::{Exchange, Method, Payload, header};
use super::{Client, RegistryError};

/// Blobs up to this size go up in one request; larger ones in chunks of
/// this size, so that a registry never has to take one huge request.
pub const CHUNK_BYTES: u64 = 16 * 1024 * 1024;

/// What a mount attempt achieved.
#[derive(Debug)]
pub enum Mount {
    /// The registry linked the blob from the other repository.
    Mounted,
    /// The registry refused and opened an upload session instead.
    Refused {
        /// Where to upload.
        location: String,
    },
}

impl Client {
    /// Tells whether `reference`'s repository holds the blob.
    pub fn has_remote_blob(
        &self,
        reference: &Reference,
        digest: &Digest,
    ) -> Result<bool, RegistryError> {
        let path = format!("/v2/{}/blobs/{digest}", reference.repository());
        let mut request = Exchange::new(reference, Method::Head, &path, format!("blob {digest}"));
        request.is_push = true;
        let response = self.exchange_any(request)?;
        match response.status() {
            status if status.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.status_error(reference, &format!("blob {digest}"), response, 1)),
        }
    }

    /// Asks the registry to link a blob that repository `from` holds into
    /// `reference`'s repository, without sending it.
    pub fn mount_blob(
        &self,
        reference: &Reference,
        digest: &Digest,
        from: &str,
    ) -> Result<Mount, RegistryError> {
        let path = format!(
            "/v2/{}/blobs/uploads/?mount={digest}&from={from}",
            reference.repository()
        );
        let what = format!("mount of blob {digest} from {from}");
        let mut request = Exchange::new(reference, Method::Post, &path, what.clone());
        request.is_push = true;
        request.also_reads = Some(from);
        let response = self.exchange(request)?;
        if response.status() == StatusCode::CREATED {
            return Ok(Mount::Mounted);
        }
        let location = location(reference, &response, &what)?;
        Ok(Mount::Refused { location })
    }

    /// Uploads a blob from `file`, into the upload session at `location`
    /// or a new one; the registry checks the digest when it closes.
    pub fn upload_blob(
        &self,
        reference: &Reference,
        descriptor: &Descriptor,
        file: File,
        location: Option<String>,
    ) -> Result<(), RegistryError> {
        let location = match location {
            Some(location) => location,
            None => self.start_upload(reference)?,
        };
        let what = format!("upload of blob {}", descriptor.digest);
        if descriptor.size <= CHUNK_BYTES {
            return self.finish_upload(
                reference,
                &location,
                &descriptor.digest,
                Some((file, descriptor.size)),
                &what,
            );
        }
        let location = self.upload_chunks(reference, location, descriptor, file, &what)?;
        self.finish_upload(reference, &location, &descriptor.digest, None, &what)
    }

    /// Puts a manifest or index under `target` (a tag or its digest) with
    /// its exact bytes and media type, so that its digest stays the same.
    pub fn put_manifest(
        &self,
        reference: &Reference,
        target: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<(), RegistryError> {
        let path = format!("/v2/{}/manifests/{target}", reference.repository());
        let mut request =
            Exchange::new(reference, Method::Put, &path, format!("manifest {target}"));
        request.is_push = true;
        request
            .headers
            .push(("Content-Type", media_type.to_string()));
        request.payload = Payload::Bytes(bytes);
        self.exchange(request).map(drop)
    }

    fn start_upload(&self, reference: &Reference) -> Result<String, RegistryError> {
        let path = format!("/v2/{}/blobs/uploads/", reference.repository());
        let what = "start of a blob upload".to_string();
        let mut request = Exchange::new(reference, Method::Post, &path, what.clone());
        request.is_push = true;
        let response = self.exchange(request)?;
        location(reference, &response, &what)
    }

    /// Sends the blob in chunks with `PATCH`; returns the location to close
    /// the upload at.
    fn upload_chunks(
        &self,
        reference: &Reference,
        mut location: String,
        descriptor: &Descriptor,
        mut file: File,
        what: &str,
    ) -> Result<String, RegistryError> {
        let mut offset = 0;
        while offset < descriptor.size {
            let length = CHUNK_BYTES.min(descriptor.size - offset);
            let mut chunk = (&mut file).take(length);
            let mut request = Exchange::new(reference, Method::Patch, &location, what.to_string());
            request.is_push = true;
            request
                .headers
                .push(("Content-Type", "application/octet-stream".to_string()));
            request
                .headers
                .push(("Content-Range", format!("{offset}-{}", offset + length - 1)));
            request.payload = Payload::Stream(&mut chunk, length);
            let response = self.exchange(request)?;
            location = self::location(reference, &response, what)?;
            offset += length;
        }
        Ok(location)
    }

    /// Closes an upload with `PUT ?digest=`, sending the last bytes if any.
    fn finish_upload(
        &self,
        reference: &Reference,
        location: &str,
        digest: &Digest,
        body: Option<(File, u64)>,
        what: &str,
    ) -> Result<(), RegistryError> {
        let separator = if location.contains('?') { '&' } else { '?' };
        let target = format!("{location}{separator}digest={digest}");
        let mut request = Exchange::new(reference, Method::Put, &target, what.to_string());
        request.is_push = true;
        match body {
            Some((mut file, length)) => {
                request
                    .headers
                    .push(("Content-Type", "application/octet-stream".to_string()));
                request.payload = Payload::Stream(&mut file, length);
                self.exchange(request).map(drop)
            }
            None => self.exchange(request).map(drop),
        }
    }
}

/// Reads the `Location` of an upload session; it may be relative to the
/// registry, which the next exchange resolves.
fn location(
    reference: &Reference,
    response: &ureq::http::Response<ureq::Body>,
    what: &str,
) -> Result<String, RegistryError> {
    header(response, "location").ok_or_else(|| RegistryError::Status {
        registry: reference.domain().to_string(),
        what: what.to_string(),
        status: response.status().as_u16(),
        detail: "the answer has no Location header".to_string(),
        attempts: 1,
    })
}
