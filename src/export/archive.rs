//! Writing tar streams: the archive every export format produces.
//!
//! Headers are POSIX ustar, built with the `tar` crate; whatever does not
//! fit a ustar field (a path over 100 bytes, a long link target or owner
//! name, a size over 8 GiB) and every PAX record carried over from a layer
//! (extended attributes, sub-second times) goes into a PAX extended header
//! before the entry (POSIX.1-2001 `pax`). Data is copied with its length
//! checked: an entry never gets fewer or more bytes than its header
//! promises. The two zero blocks that end an archive are written only by
//! [`TarWriter::finish`], so an export that fails half-way never looks like
//! a complete archive.

use std::io::{self, Read, Write};

use tar::{EntryType, Header};

/// The size of a tar block.
const BLOCK: usize = 512;
/// The largest size a ustar header holds in octal: 8 GiB - 1.
const USTAR_MAX_SIZE: u64 = 0o77777777777;
/// How much data is copied at a time.
const COPY_BUFFER: usize = 256 * 1024;

/// The metadata of one entry to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EntryMeta {
    /// The ustar type flag: `b'0'`, `b'1'`, `b'2'`, `b'5'`, ...
    pub typeflag: u8,
    /// The mode field, permission bits and any others the source had.
    pub mode: u32,
    /// The owner's user id.
    pub uid: u64,
    /// The owner's group id.
    pub gid: u64,
    /// The modification time in seconds since the epoch.
    pub mtime: u64,
    /// The owner's user name, possibly empty.
    pub uname: Vec<u8>,
    /// The owner's group name, possibly empty.
    pub gname: Vec<u8>,
    /// The device numbers of a character or block device.
    pub device: (u32, u32),
    /// The size of the data, for regular files; zero for everything else.
    pub size: u64,
    /// The target of a symlink or hard link; empty for everything else.
    pub link: Vec<u8>,
    /// PAX records to carry over, such as `SCHILY.xattr.*` or `mtime`.
    pub pax: Vec<(Vec<u8>, Vec<u8>)>,
}

impl EntryMeta {
    /// Returns the metadata of a regular file owned by root.
    pub(crate) fn file(size: u64) -> EntryMeta {
        EntryMeta {
            typeflag: b'0',
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 0,
            uname: Vec::new(),
            gname: Vec::new(),
            device: (0, 0),
            size,
            link: Vec::new(),
            pax: Vec::new(),
        }
    }

    /// Returns the metadata of a directory owned by root.
    pub(crate) fn directory(mode: u32) -> EntryMeta {
        EntryMeta {
            typeflag: b'5',
            mode,
            size: 0,
            ..EntryMeta::file(0)
        }
    }

    /// Tells whether entries of this type carry data.
    pub(crate) fn has_data(&self) -> bool {
        self.typeflag == b'0'
    }
}

/// Why copying an entry failed: reading its source, or writing the archive.
#[derive(Debug)]
pub(crate) enum CopyError {
    /// The source failed or ended early.
    Read(io::Error),
    /// The archive could not be written.
    Write(io::Error),
}

/// A tar stream being written.
pub(crate) struct TarWriter<W: Write> {
    out: W,
    buffer: Vec<u8>,
    written_bytes: u64,
}

impl<W: Write> TarWriter<W> {
    /// Starts an archive on `out`, which should be buffered.
    pub(crate) fn new(out: W) -> TarWriter<W> {
        TarWriter {
            out,
            buffer: Vec::new(),
            written_bytes: 0,
        }
    }

    /// Returns how many bytes the archive has so far.
    pub(crate) fn written_bytes(&self) -> u64 {
        self.written_bytes
    }

    /// Writes an entry at `path` (bytes, written as they are) whose data,
    /// if its type has any, is the next `meta.size` bytes of `data`.
    pub(crate) fn append(
        &mut self,
        path: &[u8],
        meta: &EntryMeta,
        data: &mut dyn Read,
    ) -> Result<(), CopyError> {
        let (header, pax) = build_header(path, meta);
        if !pax.is_empty() {
            self.write_pax(&pax).map_err(CopyError::Write)?;
        }
        self.write_all(header.as_bytes())
            .map_err(CopyError::Write)?;
        if meta.has_data() {
            self.copy_exactly(data, meta.size)?;
            self.pad(meta.size).map_err(CopyError::Write)?;
        }
        Ok(())
    }

    /// Writes an entry whose data is `bytes`.
    pub(crate) fn append_bytes(
        &mut self,
        path: &[u8],
        meta: &EntryMeta,
        bytes: &[u8],
    ) -> io::Result<()> {
        debug_assert_eq!(meta.size, bytes.len() as u64);
        self.append(path, meta, &mut &bytes[..])
            .map_err(|e| match e {
                CopyError::Read(e) | CopyError::Write(e) => e,
            })
    }

    /// Ends the archive with two zero blocks, flushes it and returns the
    /// writer.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        self.write_all(&[0; 2 * BLOCK])?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn write_pax(&mut self, records: &[u8]) -> io::Result<()> {
        let mut header = Header::new_ustar();
        set_name(&mut header, b"././@PaxHeader");
        header.set_mode(0o644);
        header.set_size(records.len() as u64);
        header.set_entry_type(EntryType::XHeader);
        header.set_cksum();
        self.write_all(header.as_bytes())?;
        self.write_all(records)?;
        self.pad(records.len() as u64)
    }

    fn copy_exactly(&mut self, data: &mut dyn Read, size: u64) -> Result<(), CopyError> {
        if self.buffer.is_empty() {
            self.buffer = vec![0; COPY_BUFFER];
        }
        let mut remaining = size;
        while remaining > 0 {
            let want = remaining.min(self.buffer.len() as u64) as usize;
            let n = match data.read(&mut self.buffer[..want]) {
                Ok(0) => {
                    return Err(CopyError::Read(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("the data ends {remaining} bytes short of its {size} bytes"),
                    )));
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(CopyError::Read(e)),
            };
            self.out
                .write_all(&self.buffer[..n])
                .map_err(CopyError::Write)?;
            self.written_bytes += n as u64;
            remaining -= n as u64;
        }
        Ok(())
    }

    fn pad(&mut self, size: u64) -> io::Result<()> {
        let rest = (size % BLOCK as u64) as usize;
        if rest == 0 {
            return Ok(());
        }
        self.write_all(&[0; BLOCK][..BLOCK - rest])
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.written_bytes += bytes.len() as u64;
        Ok(())
    }
}

/// Builds the ustar header of an entry, and the PAX records it needs.
fn build_header(path: &[u8], meta: &EntryMeta) -> (Header, Vec<u8>) {
    let mut pax = Vec::new();
    let mut header = Header::new_ustar();
    if path.len() > 100 {
        pax_record(&mut pax, b"path", path);
    }
    set_name(&mut header, path);
    header.set_mode(meta.mode);
    header.set_uid(meta.uid);
    header.set_gid(meta.gid);
    header.set_mtime(meta.mtime);
    let size = if meta.has_data() { meta.size } else { 0 };
    if size > USTAR_MAX_SIZE {
        pax_record(&mut pax, b"size", size.to_string().as_bytes());
    }
    header.set_size(size);
    header.set_entry_type(EntryType::new(meta.typeflag));
    if meta.link.len() > 100 {
        pax_record(&mut pax, b"linkpath", &meta.link);
    }
    let ustar = header.as_ustar_mut().expect("a ustar header");
    copy_truncated(&mut ustar.linkname, &meta.link);
    for (key, value, field) in [
        (b"uname".as_slice(), &meta.uname, &mut ustar.uname),
        (b"gname".as_slice(), &meta.gname, &mut ustar.gname),
    ] {
        if value.len() > field.len() {
            pax_record(&mut pax, key, value);
        }
        copy_truncated(field, value);
    }
    if matches!(meta.typeflag, b'3' | b'4') {
        ustar.set_device_major(meta.device.0);
        ustar.set_device_minor(meta.device.1);
    }
    for (key, value) in &meta.pax {
        pax_record(&mut pax, key, value);
    }
    header.set_cksum();
    (header, pax)
}

/// Sets the name field to `path`, cut at 100 bytes when a PAX `path`
/// record carries the whole.
fn set_name(header: &mut Header, path: &[u8]) {
    let ustar = header.as_ustar_mut().expect("a ustar header");
    copy_truncated(&mut ustar.name, path);
}

fn copy_truncated(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
    field[n..].fill(0);
}

/// Appends one PAX record, `"<len> <key>=<value>\n"`, where `<len>` counts
/// the whole record, itself included.
fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let rest = key.len() + value.len() + 3;
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An entry read back: path, type flag, link target, data.
    type Member = (Vec<u8>, u8, Vec<u8>, Vec<u8>);

    fn read_back(archive: &[u8]) -> Vec<Member> {
        let mut reader = tar::Archive::new(archive);
        reader
            .entries()
            .unwrap()
            .map(|entry| {
                let mut entry = entry.unwrap();
                let path = entry.path_bytes().into_owned();
                let link = entry.link_name_bytes().map(|l| l.into_owned());
                let typeflag = entry.header().entry_type().as_byte();
                let mut data = Vec::new();
                entry.read_to_end(&mut data).unwrap();
                (path, typeflag, link.unwrap_or_default(), data)
            })
            .collect()
    }

    #[test]
    fn writes_long_names_and_links_through_pax_records() {
        let long = format!("{}/file", "d".repeat(150)).into_bytes();
        let mut writer = TarWriter::new(Vec::new());
        writer
            .append_bytes(b"short", &EntryMeta::file(5), b"hello")
            .unwrap();
        writer
            .append_bytes(&long, &EntryMeta::file(2), b"hi")
            .unwrap();
        let mut link = EntryMeta {
            typeflag: b'1',
            link: long.clone(),
            ..EntryMeta::file(0)
        };
        link.uname = "u".repeat(40).into_bytes();
        writer.append_bytes(b"link", &link, b"").unwrap();
        let archive = writer.finish().unwrap();

        let entries = read_back(&archive);
        assert_eq!(entries.len(), 3);
        assert_eq!(
            entries[0],
            (b"short".to_vec(), b'0', vec![], b"hello".to_vec())
        );
        assert_eq!(entries[1], (long.clone(), b'0', vec![], b"hi".to_vec()));
        assert_eq!(entries[2], (b"link".to_vec(), b'1', long, vec![]));
        assert_eq!(archive.len() % BLOCK, 0);
    }

    #[test]
    fn refuses_data_shorter_than_the_header_says() {
        let mut writer = TarWriter::new(Vec::new());
        let err = writer
            .append(b"f", &EntryMeta::file(10), &mut &b"short"[..])
            .unwrap_err();
        assert!(matches!(err, CopyError::Read(e) if e.kind() == io::ErrorKind::UnexpectedEof));
    }

    #[test]
    fn counts_pax_record_lengths_including_their_own_digits() {
        for value_len in [0, 1, 90, 91, 92, 93, 994, 995, 996, 9_990] {
            let mut out = Vec::new();
            let value = vec![b'x'; value_len];
            pax_record(&mut out, b"path", &value);
            let (len, _) = out.split_at(out.iter().position(|&b| b == b' ').unwrap());
            let len: usize = std::str::from_utf8(len).unwrap().parse().unwrap();
            assert_eq!(len, out.len(), "value of {value_len} bytes");
        }
    }
}
