//! The document on disk, under `.symphony/sync/` beside the tracker lock (docs/sync.md,
//! "What is persisted where").
//!
//! - `snapshot`: `SYMSNAP1`, the tracker name (u32 LE length + UTF-8), then `Automerge::save`.
//! - `changes.log`: `SYMLOG01`, the tracker name likewise, then entries of u32 LE length,
//!   the first 4 bytes of the entry's SHA-256, and one change's bytes. Appended and fsynced
//!   before anyone is told of the change (persist before broadcast).
//! - `file-heads`: the heads the issues file last matched, a JSON array of hex hashes.
//! - `actor`: this node's Automerge actor id (hex), made once.
//!
//! Loading cuts a torn tail of the log (an entry cut short, or a last entry whose checksum
//! fails: an append that did not finish) with a warning. A corrupt snapshot, a damaged entry
//! followed by others, or a document of another tracker is refused with an error naming the
//! path; nothing is projected then, so the issues file stays untouched. Compaction writes a
//! new snapshot (temp, fsync, rename, fsync dir) and only then empties the log: a crash at
//! any point leaves a snapshot and a log whose union is the whole document.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use automerge::{ActorId, Automerge, Change, ChangeHash};
use sha2::{Digest, Sha256};

use crate::error::{Result, SyncError};
use crate::replica::Replica;

/// Directory under the tracker's state directory (`.symphony/`).
pub const SYNC_DIR: &str = "sync";
const SNAPSHOT: &str = "snapshot";
const LOG: &str = "changes.log";
const FILE_HEADS: &str = "file-heads";
const ACTOR: &str = "actor";
const SNAPSHOT_MAGIC: &[u8; 8] = b"SYMSNAP1";
const LOG_MAGIC: &[u8; 8] = b"SYMLOG01";
/// Largest change accepted from the log, in bytes (a change is one import or one edit).
pub const MAX_LOGGED_CHANGE: usize = 64 * 1024 * 1024;

/// The persisted document of one node.
pub struct Persistence {
    dir: PathBuf,
    tracker: String,
    log: File,
    log_bytes: u64,
    /// Heads whose changes are all on disk.
    saved: Vec<ChangeHash>,
}

/// What [`open`] found.
pub struct Loaded {
    /// The document, ready to import and project.
    pub replica: Replica,
    /// Where its changes go.
    pub persistence: Persistence,
    /// What was repaired on the way (a torn log tail), already logged as warnings.
    pub warnings: Vec<String>,
}

/// Loads (or creates) the document of tracker `tracker` under `state_dir/sync/`.
///
/// Errors: [`SyncError::Corrupt`] and [`SyncError::WrongTracker`] naming the snapshot or the
/// log; [`SyncError::Io`].
pub fn open(state_dir: &Path, tracker: &str) -> Result<Loaded> {
    let dir = state_dir.join(SYNC_DIR);
    std::fs::create_dir_all(&dir).map_err(|e| SyncError::io(&dir, e))?;
    let actor = actor(&dir)?;
    let mut warnings = Vec::new();
    let snapshot_path = dir.join(SNAPSHOT);
    let mut doc = match read_optional(&snapshot_path)? {
        Some(bytes) => {
            let body = check_header(&snapshot_path, &bytes, SNAPSHOT_MAGIC, tracker)?;
            Automerge::load(body).map_err(|e| SyncError::Corrupt {
                path: snapshot_path.clone(),
                message: format!("the snapshot does not load: {e}"),
            })?
        }
        None => Automerge::new(),
    };
    let log_path = dir.join(LOG);
    let (changes, good_len) = read_log(&log_path, tracker, &mut warnings)?;
    doc.apply_changes(changes).map_err(|e| SyncError::Corrupt {
        path: log_path.clone(),
        message: format!("a logged change does not apply: {e}"),
    })?;
    let log = open_log(&log_path, tracker, good_len)?;
    let log_bytes = log
        .metadata()
        .map_err(|e| SyncError::io(&log_path, e))?
        .len();
    let file_heads = read_file_heads(&dir.join(FILE_HEADS))?;
    let fresh = doc.get_heads().is_empty();
    let replica = if fresh {
        Replica::new(tracker, actor)?
    } else {
        let named = if snapshot_path.exists() {
            snapshot_path
        } else {
            log_path.clone()
        };
        Replica::from_doc(doc, tracker, actor, &file_heads).map_err(|e| match e {
            SyncError::WrongTracker {
                expected, found, ..
            } => SyncError::WrongTracker {
                path: named.clone(),
                expected,
                found,
            },
            SyncError::Layout(message) => SyncError::Corrupt {
                path: named.clone(),
                message,
            },
            other => other,
        })?
    };
    let saved = if fresh {
        Vec::new()
    } else {
        replica.doc().get_heads()
    };
    let mut persistence = Persistence {
        dir,
        tracker: tracker.to_string(),
        log,
        log_bytes,
        saved,
    };
    persistence.persist(&replica)?;
    Ok(Loaded {
        replica,
        persistence,
        warnings,
    })
}

impl Persistence {
    /// Appends every change of `replica` not yet on disk to the log and fsyncs it. Returns
    /// the number of changes written. Call before telling any peer of them.
    pub fn persist(&mut self, replica: &Replica) -> Result<usize> {
        let changes = replica.doc().get_changes(&self.saved);
        if changes.is_empty() {
            return Ok(0);
        }
        let mut buffer = Vec::new();
        for change in &changes {
            let bytes = change.raw_bytes();
            let len = u32::try_from(bytes.len()).map_err(|_| SyncError::Corrupt {
                path: self.log_path(),
                message: format!("a change of {} bytes is too large to log", bytes.len()),
            })?;
            buffer.extend_from_slice(&len.to_le_bytes());
            buffer.extend_from_slice(&Sha256::digest(bytes)[..4]);
            buffer.extend_from_slice(bytes);
        }
        let path = self.log_path();
        self.log
            .write_all(&buffer)
            .and_then(|()| self.log.sync_data())
            .map_err(|e| SyncError::io(&path, e))?;
        self.log_bytes += buffer.len() as u64;
        self.saved = replica.doc().get_heads();
        Ok(changes.len())
    }

    /// Records that the issues file matches the document at `heads` (atomic replace).
    pub fn save_file_heads(&self, heads: &[ChangeHash]) -> Result<()> {
        let text: Vec<String> = heads.iter().map(ToString::to_string).collect();
        let json = serde_json::to_vec(&text).map_err(SyncError::json)?;
        replace(&self.dir.join(FILE_HEADS), &json)
    }

    /// Bytes in the change log now.
    pub fn log_bytes(&self) -> u64 {
        self.log_bytes
    }

    /// Writes a snapshot of `replica` and empties the log, crash-safely (module docs).
    /// Returns the snapshot's size in bytes.
    pub fn compact(&mut self, replica: &Replica) -> Result<u64> {
        self.persist(replica)?;
        let mut bytes = header(SNAPSHOT_MAGIC, &self.tracker);
        bytes.extend_from_slice(&replica.doc().save());
        replace(&self.dir.join(SNAPSHOT), &bytes)?;
        let log_path = self.log_path();
        replace(&log_path, &header(LOG_MAGIC, &self.tracker))?;
        self.log = open_log(&log_path, &self.tracker, None)?;
        self.log_bytes = header(LOG_MAGIC, &self.tracker).len() as u64;
        Ok(bytes.len() as u64)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join(LOG)
    }
}

fn header(magic: &[u8; 8], tracker: &str) -> Vec<u8> {
    let mut bytes = magic.to_vec();
    bytes.extend_from_slice(&(tracker.len() as u32).to_le_bytes());
    bytes.extend_from_slice(tracker.as_bytes());
    bytes
}

/// The body after a valid header, or the error naming `path`.
fn check_header<'a>(
    path: &Path,
    bytes: &'a [u8],
    magic: &[u8; 8],
    tracker: &str,
) -> Result<&'a [u8]> {
    let corrupt = |message: &str| SyncError::Corrupt {
        path: path.to_path_buf(),
        message: message.to_string(),
    };
    if bytes.len() < 12 || &bytes[..8] != magic {
        return Err(corrupt("not a symphony-sync file (bad magic)"));
    }
    let len = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
    let Some(name) = bytes.get(12..12 + len) else {
        return Err(corrupt("the header is cut short"));
    };
    let found = String::from_utf8_lossy(name);
    if found != tracker {
        return Err(SyncError::WrongTracker {
            path: path.to_path_buf(),
            expected: tracker.to_string(),
            found: found.into_owned(),
        });
    }
    Ok(&bytes[12 + len..])
}

/// The log's whole changes, and the length to cut it back to when its tail is torn.
fn read_log(
    path: &Path,
    tracker: &str,
    warnings: &mut Vec<String>,
) -> Result<(Vec<Change>, Option<u64>)> {
    let Some(bytes) = read_optional(path)? else {
        return Ok((Vec::new(), None));
    };
    let head_len = header(LOG_MAGIC, tracker).len();
    if bytes.len() < head_len && header(LOG_MAGIC, tracker).starts_with(&bytes) {
        warn(
            warnings,
            path,
            0,
            "the log header is cut short; starting an empty log",
        );
        return Ok((Vec::new(), Some(0)));
    }
    let body = check_header(path, &bytes, LOG_MAGIC, tracker)?;
    let mut changes = Vec::new();
    let mut at = 0usize;
    while at < body.len() {
        let entry_start = head_len + at;
        let Some(frame) = body.get(at..at + 8) else {
            warn(
                warnings,
                path,
                entry_start,
                "a log entry's header is cut short",
            );
            return Ok((changes, Some(entry_start as u64)));
        };
        let len = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
        if len > MAX_LOGGED_CHANGE {
            return Err(SyncError::Corrupt {
                path: path.to_path_buf(),
                message: format!("entry at byte {entry_start} claims {len} bytes"),
            });
        }
        let Some(data) = body.get(at + 8..at + 8 + len) else {
            warn(
                warnings,
                path,
                entry_start,
                "the last log entry is cut short",
            );
            return Ok((changes, Some(entry_start as u64)));
        };
        let last = at + 8 + len == body.len();
        if Sha256::digest(data)[..4] != frame[4..8] {
            if last {
                warn(
                    warnings,
                    path,
                    entry_start,
                    "the last log entry fails its checksum",
                );
                return Ok((changes, Some(entry_start as u64)));
            }
            return Err(SyncError::Corrupt {
                path: path.to_path_buf(),
                message: format!(
                    "entry at byte {entry_start} fails its checksum and is not the last"
                ),
            });
        }
        let change = Change::from_bytes(data.to_vec()).map_err(|e| SyncError::Corrupt {
            path: path.to_path_buf(),
            message: format!("entry at byte {entry_start} is not a change: {e}"),
        })?;
        changes.push(change);
        at += 8 + len;
    }
    Ok((changes, None))
}

fn warn(warnings: &mut Vec<String>, path: &Path, at: usize, what: &str) {
    let message = format!(
        "{}: {what} at byte {at}; cut back to the last whole change",
        path.display()
    );
    tracing::warn!(path = %path.display(), byte = at, "{what}; torn log tail cut back");
    warnings.push(message);
}

/// Opens the log for appending, writing its header when new and cutting it to `cut` first.
fn open_log(path: &Path, tracker: &str, cut: Option<u64>) -> Result<File> {
    let mut file = OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)
        .map_err(|e| SyncError::io(path, e))?;
    if let Some(len) = cut {
        file.set_len(len)
            .and_then(|()| file.sync_all())
            .map_err(|e| SyncError::io(path, e))?;
    }
    let len = file.metadata().map_err(|e| SyncError::io(path, e))?.len();
    if len == 0 {
        file.write_all(&header(LOG_MAGIC, tracker))
            .and_then(|()| file.sync_all())
            .map_err(|e| SyncError::io(path, e))?;
        sync_dir(path)?;
    }
    Ok(file)
}

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>> {
    match File::open(path) {
        Ok(mut file) => {
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes)
                .map_err(|e| SyncError::io(path, e))?;
            Ok(Some(bytes))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(SyncError::io(path, e)),
    }
}

fn read_file_heads(path: &Path) -> Result<Vec<ChangeHash>> {
    let Some(bytes) = read_optional(path)? else {
        return Ok(Vec::new());
    };
    let corrupt = |message: String| SyncError::Corrupt {
        path: path.to_path_buf(),
        message,
    };
    let text: Vec<String> = serde_json::from_slice(&bytes)
        .map_err(|e| corrupt(format!("not a JSON array of hashes: {e}")))?;
    text.iter()
        .map(|h| {
            h.parse::<ChangeHash>()
                .map_err(|e| corrupt(format!("{h:?}: {e}")))
        })
        .collect()
}

fn actor(dir: &Path) -> Result<ActorId> {
    let path = dir.join(ACTOR);
    if let Some(bytes) = read_optional(&path)? {
        let text = String::from_utf8_lossy(&bytes);
        return hex::decode(text.trim())
            .ok()
            .filter(|raw| raw.len() == 16)
            .map(|raw| ActorId::from(raw.as_slice()))
            .ok_or_else(|| SyncError::Corrupt {
                path: path.clone(),
                message: "expected 32 hex digits".into(),
            });
    }
    let raw: [u8; 16] = rand::random();
    replace(&path, hex::encode(raw).as_bytes())?;
    Ok(ActorId::from(raw.as_slice()))
}

/// Atomically replaces `path` with `bytes`: temp file, fsync, rename, fsync the directory.
pub(crate) fn replace(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut temp = path.as_os_str().to_owned();
    temp.push(".tmp");
    let temp = PathBuf::from(temp);
    File::create(&temp)
        .and_then(|mut file| file.write_all(bytes).and_then(|()| file.sync_all()))
        .and_then(|()| std::fs::rename(&temp, path))
        .map_err(|e| SyncError::io(path, e))?;
    sync_dir(path)
}

fn sync_dir(path: &Path) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| SyncError::io(dir, e))
}
