//! Safe extraction of a zip that came off the network.

use super::timestamps::dos_to_unix;
use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Symlink,
}

/// One validated entry, ready to be materialized.
#[derive(Debug)]
struct Planned {
    index: usize,
    name: String,
    /// Relative path made only of normal components; empty for the root itself.
    rel: PathBuf,
    kind: Kind,
    perm: u32,
    mtime: Option<SystemTime>,
}

/// Final mode and mtime of a directory this extraction created.
#[derive(Debug, Clone, Copy)]
struct DirFixup {
    perm: u32,
    mtime: Option<SystemTime>,
}

/// Extracts into `dest` (created if missing) safely.
///
/// Every entry is validated (names, types, declared sizes, counts) before anything is written.
/// Then entries are written in archive order: existing directories are left alone, an existing
/// file, symlink or special file at an entry's own path is removed and replaced (so nothing is
/// ever written through it), and any path whose parent chain contains a symlink is refused.
/// Directories get their final mode and mtime after all their content is written. Symlink
/// mtimes are not restored (std cannot set them without following the link). On error the
/// partially written entry is removed; entries completed before it stay. The checks are
/// path-based (lstat, then create), so they assume nobody else writes into `dest` meanwhile.
pub fn extract_zip<R: Read + Seek>(
    input: R,
    dest: &Path,
    limits: &ExtractLimits,
) -> Result<ExtractSummary, ArchiveError> {
    let mut input = input;
    let archive_bytes = archive_len(&mut input)?;
    let mut archive = ZipArchive::new(input).map_err(zip_err("reading the central directory"))?;
    let plan = plan_entries(&mut archive, limits)?;
    fs::create_dir_all(dest).map_err(io_err("create directory", dest))?;
    let mut extractor = Extractor {
        dest,
        limits,
        summary: ExtractSummary::default(),
        created_dirs: HashMap::new(),
        archive_bytes,
    };
    for entry in &plan {
        let mut file = archive
            .by_index(entry.index)
            .map_err(zip_err(format!("opening entry {:?}", entry.name)))?;
        extractor.extract_entry(entry, &mut file)?;
    }
    extractor.finish_dirs()?;
    Ok(extractor.summary)
}

/// Bytes from the reader's position to its end (the position is restored).
fn archive_len<R: Seek>(input: &mut R) -> Result<u64, ArchiveError> {
    let measure = |input: &mut R| -> io::Result<u64> {
        let start = input.stream_position()?;
        let end = input.seek(io::SeekFrom::End(0))?;
        input.seek(io::SeekFrom::Start(start))?;
        Ok(end.saturating_sub(start))
    };
    measure(input).map_err(|source| ArchiveError::Io {
        op: "measure",
        path: PathBuf::from("the archive"),
        source,
    })
}

/// Validates every entry and the declared sizes before anything touches the disk.
fn plan_entries<R: Read + Seek>(
    archive: &mut ZipArchive<R>,
    limits: &ExtractLimits,
) -> Result<Vec<Planned>, ArchiveError> {
    let count = archive.len() as u64;
    if count > limits.max_entries {
        return Err(ArchiveError::TooManyEntries {
            count,
            max: limits.max_entries,
        });
    }
    let mut declared_total = 0u64;
    let mut plan = Vec::with_capacity(archive.len());
    for index in 0..archive.len() {
        let file = archive
            .by_index_raw(index)
            .map_err(zip_err(format!("reading the header of entry #{index}")))?;
        let planned = plan_entry(index, &file)?;
        let size = file.size();
        if size > limits.max_entry_bytes {
            return Err(ArchiveError::EntryTooLarge {
                name: planned.name,
                which: "declared",
                size,
                max: limits.max_entry_bytes,
            });
        }
        declared_total = declared_total.saturating_add(size);
        if declared_total > limits.max_total_bytes {
            return Err(ArchiveError::TotalTooLarge {
                name: planned.name,
                which: "declared",
                total: declared_total,
                max: limits.max_total_bytes,
            });
        }
        plan.push(planned);
    }
    Ok(plan)
}

fn plan_entry<R: Read>(index: usize, file: &ZipFile<'_, R>) -> Result<Planned, ArchiveError> {
    let name = file.name().to_owned();
    if file.name_raw().contains(&0) {
        return Err(ArchiveError::UnsafeName {
            index,
            name,
            reason: "contains a NUL byte",
        });
    }
    let (rel, trailing_slash) = safe_relative_path(index, &name)?;
    let (kind, perm) = classify(&name, file.unix_mode(), trailing_slash)?;
    if rel.as_os_str().is_empty() && kind != Kind::Dir {
        return Err(ArchiveError::UnsafeName {
            index,
            name,
            reason: "names the destination itself",
        });
    }
    if file.encrypted() {
        return Err(ArchiveError::Encrypted { name });
    }
    let method = file.compression();
    if !matches!(
        method,
        CompressionMethod::Stored | CompressionMethod::Deflated
    ) {
        return Err(ArchiveError::UnsupportedCompression {
            name,
            method: method.to_string(),
        });
    }
    Ok(Planned {
        index,
        name,
        rel,
        kind,
        perm,
        mtime: entry_mtime(file),
    })
}

/// Turns an entry name into a relative path of normal components, plus whether it ended in '/'.
fn safe_relative_path(index: usize, name: &str) -> Result<(PathBuf, bool), ArchiveError> {
    let refuse = |reason| ArchiveError::UnsafeName {
        index,
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() {
        return Err(refuse("empty name"));
    }
    if name.contains('\0') {
        return Err(refuse("contains a NUL byte"));
    }
    // Windows tools treat '\' as a separator, so "..\\x" would climb there; refuse it everywhere.
    if name.contains('\\') {
        return Err(refuse("contains a backslash"));
    }
    if name.starts_with('/') {
        return Err(refuse("absolute path"));
    }
    let mut rel = PathBuf::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(refuse("contains a '..' component")),
            normal => rel.push(normal),
        }
    }
    Ok((rel, name.ends_with('/')))
}

/// Decides the entry kind and its permission bits from the stored unix mode.
fn classify(
    name: &str,
    mode: Option<u32>,
    trailing_slash: bool,
) -> Result<(Kind, u32), ArchiveError> {
    let by_name = if trailing_slash {
        Kind::Dir
    } else {
        Kind::File
    };
    let Some(mode) = mode.filter(|m| *m != 0) else {
        let perm = if trailing_slash {
            DEFAULT_DIR_MODE
        } else {
            DEFAULT_FILE_MODE
        };
        return Ok((by_name, perm));
    };
    let special = |kind| ArchiveError::SpecialFile {
        name: name.to_owned(),
        mode,
        kind,
    };
    let kind = match mode & S_IFMT {
        0 => by_name,
        S_IFDIR => Kind::Dir,
        S_IFREG => Kind::File,
        S_IFLNK => Kind::Symlink,
        S_IFIFO => return Err(special("FIFO")),
        S_IFCHR => return Err(special("character device")),
        S_IFBLK => return Err(special("block device")),
        S_IFSOCK => return Err(special("socket")),
        _ => {
            return Err(ArchiveError::UnknownFileType {
                name: name.to_owned(),
                mode,
            });
        }
    };
    if trailing_slash && kind != Kind::Dir {
        return Err(ArchiveError::InconsistentType {
            name: name.to_owned(),
            mode,
        });
    }
    Ok((kind, mode & PERM_BITS))
}

/// The entry mtime: the extended timestamp when present (whole seconds), else the DOS field.
fn entry_mtime<R: Read>(file: &ZipFile<'_, R>) -> Option<SystemTime> {
    let extended = file.extra_data_fields().find_map(|field| match field {
        ExtraField::ExtendedTimestamp(ts) => ts.mod_time(),
        _ => None,
    });
    let secs = match extended {
        Some(secs) => i64::from(secs),
        None => dos_to_unix(file.last_modified()?),
    };
    let offset = Duration::from_secs(secs.unsigned_abs());
    if secs >= 0 {
        UNIX_EPOCH.checked_add(offset)
    } else {
        UNIX_EPOCH.checked_sub(offset)
    }
}

/// Checks a symlink target lexically. `depth` is how many directories the link sits below `dest`.
///
/// `..` is accepted only before the first named component: after a named component it could
/// climb out of a directory reached through another link (`r -> sub/q/..` with `sub/q -> ..`
/// looks harmless lexically but lands above `dest`).
fn check_link_target(target: &[u8], depth: usize) -> Result<(), &'static str> {
    if target.is_empty() {
        return Err("empty target");
    }
    if target.contains(&0) {
        return Err("contains a NUL byte");
    }
    if target.starts_with(b"/") {
        return Err("absolute target");
    }
    let mut ups = 0usize;
    let mut named = false;
    for part in target.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." if named => return Err("'..' after a named component"),
            b".." => {
                ups += 1;
                if ups > depth {
                    return Err("resolves outside the destination");
                }
            }
            _ => named = true,
        }
    }
    Ok(())
}

struct Extractor<'a> {
    dest: &'a Path,
    limits: &'a ExtractLimits,
    summary: ExtractSummary,
    /// Directories created by this extraction; pre-existing ones are never chmod-ed or touched.
    created_dirs: HashMap<PathBuf, DirFixup>,
    /// Size of the archive, for the compression-ratio limit.
    archive_bytes: u64,
}

impl Extractor<'_> {
    fn extract_entry<R: Read>(
        &mut self,
        entry: &Planned,
        file: &mut ZipFile<'_, R>,
    ) -> Result<(), ArchiveError> {
        match entry.kind {
            Kind::Dir => self.make_dir(entry)?,
            Kind::File => self.write_file(entry, file)?,
            Kind::Symlink => self.make_symlink(entry, file)?,
        }
        self.summary.entries += 1;
        Ok(())
    }

    /// Creates (or checks) every parent of the entry and returns the entry's full path.
    fn prepare_parents(&mut self, entry: &Planned) -> Result<PathBuf, ArchiveError> {
        let mut path = self.dest.to_path_buf();
        let mut parts = entry.rel.iter().peekable();
        while let Some(part) = parts.next() {
            path.push(part);
            if parts.peek().is_some() {
                self.ensure_parent_dir(entry, &path)?;
            }
        }
        Ok(path)
    }

    fn ensure_parent_dir(&mut self, entry: &Planned, path: &Path) -> Result<(), ArchiveError> {
        match fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_symlink() => Err(ArchiveError::ThroughSymlink {
                name: entry.name.clone(),
                link: path.to_path_buf(),
            }),
            Ok(meta) if meta.is_dir() => Ok(()),
            Ok(_) => Err(ArchiveError::Conflict {
                name: entry.name.clone(),
                path: path.to_path_buf(),
                reason: "a parent path exists and is not a directory",
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.create_dir(path)?;
                let implicit = DirFixup {
                    perm: DEFAULT_DIR_MODE,
                    mtime: None,
                };
                self.created_dirs.insert(path.to_path_buf(), implicit);
                Ok(())
            }
            Err(e) => Err(io_err("read metadata of", path)(e)),
        }
    }

    fn create_dir(&self, path: &Path) -> Result<(), ArchiveError> {
        DirBuilder::new()
            .mode(BUILD_DIR_MODE)
            .create(path)
            .map_err(io_err("create directory", path))
    }

    /// Returns the entry's path with nothing but a directory (refused) left in the way.
    fn prepare_leaf(&mut self, entry: &Planned) -> Result<PathBuf, ArchiveError> {
        let path = self.prepare_parents(entry)?;
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => Err(ArchiveError::Conflict {
                name: entry.name.clone(),
                path,
                reason: "a directory is in the way",
            }),
            // Unlinking (rather than truncating) also keeps us from writing into a hard link
            // or through a symlink that was already there.
            Ok(_) => {
                fs::remove_file(&path).map_err(io_err("remove", &path))?;
                Ok(path)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(path),
            Err(e) => Err(io_err("read metadata of", &path)(e)),
        }
    }

    fn make_dir(&mut self, entry: &Planned) -> Result<(), ArchiveError> {
        if entry.rel.as_os_str().is_empty() {
            return Ok(());
        }
        let path = self.prepare_parents(entry)?;
        let fixup = DirFixup {
            perm: entry.perm,
            mtime: entry.mtime,
        };
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => Err(ArchiveError::ThroughSymlink {
                name: entry.name.clone(),
                link: path,
            }),
            Ok(meta) if meta.is_dir() => {
                if let Some(existing) = self.created_dirs.get_mut(&path) {
                    *existing = fixup;
                }
                Ok(())
            }
            Ok(_) => Err(ArchiveError::Conflict {
                name: entry.name.clone(),
                path,
                reason: "a non-directory is in the way",
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.create_dir(&path)?;
                self.created_dirs.insert(path, fixup);
                Ok(())
            }
            Err(e) => Err(io_err("read metadata of", &path)(e)),
        }
    }

    fn write_file<R: Read>(
        &mut self,
        entry: &Planned,
        file: &mut ZipFile<'_, R>,
    ) -> Result<(), ArchiveError> {
        let path = self.prepare_leaf(entry)?;
        // create_new refuses to follow a symlink planted at the final component.
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_err("create", &path))?;
        let result = self
            .copy_limited(entry, file, &mut out, &path)
            .and_then(|()| finish_file(entry, &out, &path));
        if result.is_err() {
            drop(out);
            // Best effort: the error being returned matters more than a failed cleanup.
            let _ = fs::remove_file(&path);
        }
        result
    }

    /// Copies the entry, counting the bytes really produced against the limits.
    fn copy_limited(
        &mut self,
        entry: &Planned,
        input: &mut impl Read,
        out: &mut impl Write,
        path: &Path,
    ) -> Result<(), ArchiveError> {
        let mut buf = vec![0u8; COPY_BUF];
        let mut written = 0u64;
        loop {
            let n = match input.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(ArchiveError::Corrupt {
                        name: entry.name.clone(),
                        source,
                    });
                }
            };
            written = written.saturating_add(n as u64);
            self.count(entry, written, n as u64)?;
            out.write_all(&buf[..n]).map_err(io_err("write", path))?;
        }
    }

    /// Adds `n` fresh bytes to the totals; `entry_bytes` is the entry's running size.
    fn count(&mut self, entry: &Planned, entry_bytes: u64, n: u64) -> Result<(), ArchiveError> {
        if entry_bytes > self.limits.max_entry_bytes {
            return Err(ArchiveError::EntryTooLarge {
                name: entry.name.clone(),
                which: "actual",
                size: entry_bytes,
                max: self.limits.max_entry_bytes,
            });
        }
        self.summary.bytes = self.summary.bytes.saturating_add(n);
        if self.summary.bytes > self.limits.max_total_bytes {
            return Err(ArchiveError::TotalTooLarge {
                name: entry.name.clone(),
                which: "actual",
                total: self.summary.bytes,
                max: self.limits.max_total_bytes,
            });
        }
        let ratio = self.limits.max_ratio;
        if ratio > 0
            && self.summary.bytes > RATIO_FREE_BYTES
            && self.summary.bytes > self.archive_bytes.saturating_mul(ratio)
        {
            return Err(ArchiveError::RatioTooHigh {
                name: entry.name.clone(),
                total: self.summary.bytes,
                archive_bytes: self.archive_bytes,
                max_ratio: ratio,
            });
        }
        Ok(())
    }

    fn make_symlink<R: Read>(
        &mut self,
        entry: &Planned,
        file: &mut ZipFile<'_, R>,
    ) -> Result<(), ArchiveError> {
        let mut target = Vec::new();
        file.by_ref()
            .take(MAX_LINK_TARGET + 1)
            .read_to_end(&mut target)
            .map_err(|source| ArchiveError::Corrupt {
                name: entry.name.clone(),
                source,
            })?;
        if target.len() as u64 > MAX_LINK_TARGET {
            return Err(ArchiveError::LinkTargetTooLong {
                name: entry.name.clone(),
                max: MAX_LINK_TARGET,
            });
        }
        self.count(entry, target.len() as u64, target.len() as u64)?;
        let depth = entry.rel.iter().count().saturating_sub(1);
        check_link_target(&target, depth).map_err(|reason| ArchiveError::UnsafeLinkTarget {
            name: entry.name.clone(),
            target: String::from_utf8_lossy(&target).into_owned(),
            reason,
        })?;
        let path = self.prepare_leaf(entry)?;
        std::os::unix::fs::symlink(OsStr::from_bytes(&target), &path)
            .map_err(io_err("create symlink", &path))
    }

    /// Applies directory modes and mtimes deepest first, after all content is in place.
    fn finish_dirs(&mut self) -> Result<(), ArchiveError> {
        let mut dirs: Vec<_> = self.created_dirs.drain().collect();
        dirs.sort_by_key(|(path, _)| std::cmp::Reverse(path.components().count()));
        for (path, fixup) in dirs {
            let meta = fs::symlink_metadata(&path).map_err(io_err("read metadata of", &path))?;
            if !meta.is_dir() {
                return Err(ArchiveError::Io {
                    op: "restore the mode of",
                    path,
                    source: io::Error::other("it is no longer a directory"),
                });
            }
            let dir = File::open(&path).map_err(io_err("open", &path))?;
            if let Some(mtime) = fixup.mtime {
                dir.set_modified(mtime)
                    .map_err(io_err("set the mtime of", &path))?;
            }
            dir.set_permissions(Permissions::from_mode(fixup.perm))
                .map_err(io_err("set the mode of", &path))?;
        }
        Ok(())
    }
}

/// Sets mtime then mode through the open handle, so a read-only mode cannot get in the way.
fn finish_file(entry: &Planned, out: &File, path: &Path) -> Result<(), ArchiveError> {
    if let Some(mtime) = entry.mtime {
        out.set_modified(mtime)
            .map_err(io_err("set the mtime of", path))?;
    }
    out.set_permissions(Permissions::from_mode(entry.perm))
        .map_err(io_err("set the mode of", path))
}
