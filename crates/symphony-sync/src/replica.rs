//! One node's copy of the tracker document, and how it meets the issues file.
//!
//! - **Root change**: every tracker document starts from one change that creates `format`,
//!   `tracker` and the `issues` map, authored by an actor derived from the tracker name with
//!   timestamp 0, so every node of a tracker holds the same `issues` map object.
//! - **Genesis**: the first import into a document without issues is one change whose actor
//!   is `sha256("symphony-sync/genesis" ‖ tracker ‖ file bytes)[..16]` and whose timestamp
//!   is 0: nodes importing the same file content make the same change (same hash), so two
//!   clones share one history instead of two copies of every issue.
//! - **Import** (the file into the document): each changed line is diffed field by field
//!   against the document *as of the heads the file last matched* ([`Replica::file_heads`]),
//!   and the change is made at those heads. Remote changes made since are concurrent with it,
//!   so a human edit to one field never overwrites a remote edit to another.
//! - **Projection** (the document into the file): only the issues changed since the file
//!   heads are rewritten, through the tracker's minimal-diff [`Store::transact`].
//! - **Concurrent creation**: two nodes that create the same id conflict on its key. The
//!   value Automerge shows wins; the node that authored a losing value moves it to the next
//!   free id (the merge driver's renumbering, `renumbered_from` set) and marks the old value
//!   moved. Only its author acts, so the move is made once.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::{Hash, Hasher};

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{
    ActorId, Automerge, Change, ChangeHash, ObjId, ObjType, PatchLog, Prop, ROOT, ReadDoc,
};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use symphony_tracker::document::parse_record;
use symphony_tracker::ids::IdConfig;
use symphony_tracker::merge::RENUMBERED_FROM;
use symphony_tracker::{Document, JsonStyle, Store, TrackerError, WriteReport};

use crate::error::{Result, SyncError};
use crate::layout::{self, create_record, read_record, update_record};

/// Version of the document layout, stored at `format` in the root change.
pub const FORMAT: i64 = 1;
/// Root key of the style of the file the genesis imported.
pub const STYLE_KEY: &str = "style";
/// Reserved key set on a losing concurrent creation once its author has moved it.
pub const MOVED_KEY: &str = "\u{0}moved_to";

/// One record the import left out, with where it is and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// 1-based line in the issues file.
    pub line: usize,
    /// What is wrong (the tracker's message, which names file and line).
    pub message: String,
}

/// What an import did.
#[derive(Debug, Clone, Default)]
pub struct ImportReport {
    /// The change made, if the file differed from the document.
    pub change: Option<ChangeHash>,
    /// Whether the change was the deterministic genesis.
    pub genesis: bool,
    /// Ids whose record was created, changed or removed.
    pub touched: Vec<String>,
    /// Lines not imported (they are never overwritten either).
    pub refused: Vec<Refusal>,
}

/// What one [`Replica::sync_file`] did: the import, then the projection.
#[derive(Debug, Clone, Default)]
pub struct FileSync {
    /// The import of the file as found.
    pub import: ImportReport,
    /// The tracker's report of the projection write.
    pub projection: WriteReport,
    /// Concurrent creations this node moved to new ids: `(old id, new id)`.
    pub renumbered: Vec<(String, String)>,
}

/// The tracker document of one node.
pub struct Replica {
    doc: Automerge,
    tracker: String,
    actor: ActorId,
    issues: ObjId,
    file_heads: Vec<ChangeHash>,
    /// Per id, a hash of its line as last imported: unchanged lines are skipped unparsed.
    lines: HashMap<String, u64>,
    /// Ids changed since the file heads, to project (computing them with `Automerge::diff`
    /// costs ~300 ms at 10k issues; the patches of each applied change cost next to nothing).
    dirty: BTreeSet<String>,
    ids: IdConfig,
    /// Heads of the root change alone: the state an empty file matches.
    root_heads: Vec<ChangeHash>,
}

fn derived_actor(parts: &[&[u8]]) -> ActorId {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(part);
        hash.update([0]);
    }
    ActorId::from(&hash.finalize()[..16])
}

/// The root change of tracker `tracker`'s document, the same on every node.
fn root(tracker: &str) -> Result<Automerge> {
    let mut doc =
        Automerge::new().with_actor(derived_actor(&[b"symphony-sync/root", tracker.as_bytes()]));
    let mut tx = doc.transaction();
    tx.put(ROOT, "format", FORMAT)?;
    tx.put(ROOT, "tracker", tracker)?;
    tx.put_object(ROOT, "issues", ObjType::Map)?;
    tx.commit_with(CommitOptions::default().with_message("root").with_time(0));
    Ok(doc)
}

fn now_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

fn line_hash(text: &str) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

impl Replica {
    /// A new document of tracker `tracker` (its root change only), written by `actor`.
    pub fn new(tracker: &str, actor: ActorId) -> Result<Replica> {
        Replica::from_doc(root(tracker)?, tracker, actor, &[])
    }

    /// Wraps a loaded document. `file_heads` are the heads the issues file last matched
    /// (empty: never synced with a file). Errors: [`SyncError::Layout`] when the document has
    /// no `issues` map or names no tracker, [`SyncError::WrongTracker`] (with an empty path;
    /// the caller names the file) when it names another tracker.
    pub fn from_doc(
        mut doc: Automerge,
        tracker: &str,
        actor: ActorId,
        file_heads: &[ChangeHash],
    ) -> Result<Replica> {
        let found = match doc.get(ROOT, "tracker")? {
            Some((automerge::Value::Scalar(value), _)) => value.as_str().map(str::to_string),
            _ => None,
        };
        let Some(found) = found else {
            return Err(SyncError::Layout("the document names no tracker".into()));
        };
        if found != tracker {
            return Err(SyncError::WrongTracker {
                path: Default::default(),
                expected: tracker.to_string(),
                found,
            });
        }
        let issues = match doc.get(ROOT, "issues")? {
            Some((automerge::Value::Object(ObjType::Map), id)) => id,
            _ => return Err(SyncError::Layout("the document has no issues map".into())),
        };
        // File heads the document lacks (a torn log tail lost the change they name) fall
        // back to the document's heads: whatever the file holds beyond them is imported
        // again as an edit, which is what the lost change was.
        let known = if file_heads
            .iter()
            .all(|h| doc.get_change_by_hash(h).is_some())
        {
            file_heads.to_vec()
        } else {
            tracing::warn!("the file heads are not in the document; the file is imported afresh");
            doc.get_heads()
        };
        doc.set_actor(actor.clone());
        Ok(Replica {
            doc,
            tracker: tracker.to_string(),
            actor,
            issues,
            file_heads: known,
            lines: HashMap::new(),
            dirty: BTreeSet::new(),
            ids: IdConfig::default(),
            root_heads: root(tracker)?.get_heads(),
        })
    }

    /// Sets how new ids are made when this node renumbers a concurrent creation
    /// (WORKFLOW.md `tracker.id_scheme`, `tracker.id_prefix`).
    pub fn set_id_config(&mut self, ids: IdConfig) {
        self.ids = ids;
    }

    /// The Automerge document.
    pub fn doc(&self) -> &Automerge {
        &self.doc
    }

    /// Applies changes from a peer, noting the issues they touch for projection. Call
    /// [`Replica::resolve_creations`] afterwards. Errors: a change the document rejects.
    pub fn apply_changes(&mut self, changes: Vec<Change>) -> Result<()> {
        let mut log = PatchLog::active();
        self.doc.apply_changes_log_patches(changes, &mut log)?;
        self.note_patches(&mut log);
        Ok(())
    }

    /// Applies a sync message from a peer ([`crate::session`]), noting the issues it
    /// touches for projection.
    pub(crate) fn receive_sync_message(
        &mut self,
        state: &mut automerge::sync::State,
        message: automerge::sync::Message,
    ) -> Result<()> {
        use automerge::sync::SyncDoc;
        let mut log = PatchLog::active();
        self.doc
            .receive_sync_message_log_patches(state, message, &mut log)?;
        self.note_patches(&mut log);
        Ok(())
    }

    fn note_patches(&mut self, log: &mut PatchLog) {
        for patch in self.doc.make_patches(log) {
            let id = if patch.obj == self.issues {
                match &patch.action {
                    automerge::PatchAction::PutMap { key, .. }
                    | automerge::PatchAction::DeleteMap { key } => Some(key.clone()),
                    _ => None,
                }
            } else {
                patch.path.iter().find_map(|(obj, prop)| match prop {
                    Prop::Map(key) if *obj == self.issues => Some(key.clone()),
                    _ => None,
                })
            };
            self.dirty.extend(id);
        }
    }

    /// The tracker this document belongs to.
    pub fn tracker(&self) -> &str {
        &self.tracker
    }

    /// The heads the issues file last matched; empty when it never did.
    pub fn file_heads(&self) -> &[ChangeHash] {
        &self.file_heads
    }

    /// Ids of every issue in the document, sorted.
    pub fn ids(&self) -> Vec<String> {
        self.doc.keys(&self.issues).collect()
    }

    /// The record of issue `id` as projection writes it, if the document holds it.
    pub fn issue(&self, id: &str) -> Option<Map<String, Value>> {
        match self.doc.get(&self.issues, id) {
            Ok(Some((automerge::Value::Object(ObjType::Map), obj))) => {
                Some(read_record(&self.doc, &obj))
            }
            _ => None,
        }
    }

    /// The style projection writes lines in: the style of the file the genesis imported
    /// (stored at `style` in the document), so every clone renders a record alike.
    pub fn style(&self) -> Option<JsonStyle> {
        match self.doc.get(ROOT, STYLE_KEY) {
            Ok(Some((automerge::Value::Scalar(value), _))) => value.as_str().and_then(decode_style),
            _ => None,
        }
    }

    /// Imports the issues file as read in `file`: see the module docs. Lines that do not
    /// parse, repeat an id, or use a reserved key are refused and left alone; while a line's
    /// id cannot be read, no issue is removed (it might be that one).
    pub fn import(&mut self, file: &Document) -> Result<ImportReport> {
        let mut report = ImportReport::default();
        let mut seen: HashSet<String> = HashSet::new();
        let mut changed: Vec<(String, Map<String, Value>, u64)> = Vec::new();
        let mut ids_complete = true;
        for (index, text) in file.record_lines() {
            let id = match file.id_of(index) {
                Ok(id) => id.into_owned(),
                Err(error) => {
                    ids_complete = false;
                    report.refused.push(refusal(index, &error));
                    continue;
                }
            };
            if !seen.insert(id.clone()) {
                report.refused.push(Refusal {
                    line: index + 1,
                    message: format!(
                        "{}:{}: duplicate id {id:?}: not imported",
                        file.path().display(),
                        index + 1
                    ),
                });
                continue;
            }
            let hash = line_hash(text);
            if self.lines.get(&id) == Some(&hash) {
                continue;
            }
            match parse_record(file.path(), index + 1, text) {
                Ok(record) => match layout::reserved_key(&record) {
                    Some(pointer) => report.refused.push(Refusal {
                        line: index + 1,
                        message: format!(
                            "{}:{}: {pointer:?}: keys starting with NUL are reserved: not imported",
                            file.path().display(),
                            index + 1
                        ),
                    }),
                    None => changed.push((id, record, hash)),
                },
                Err(error) => report.refused.push(refusal(index, &error)),
            }
        }
        if self.file_heads.is_empty() {
            return self.genesis(file, changed, report);
        }
        let heads = self.file_heads.clone();
        let issues = self.issues.clone();
        let mut tx = self
            .doc
            .transaction_at(PatchLog::inactive(), &heads)
            .map_err(|e| SyncError::Layout(e.to_string()))?;
        for (id, record, _) in &changed {
            match tx.get(&issues, id.as_str())? {
                Some((automerge::Value::Object(ObjType::Map), obj)) => {
                    let old = read_record(&tx, &obj);
                    if old != *record || !old.keys().eq(record.keys()) {
                        update_record(&mut tx, &obj, &old, record)?;
                        report.touched.push(id.clone());
                    }
                }
                _ => {
                    create_record(&mut tx, &issues, id, record)?;
                    report.touched.push(id.clone());
                }
            }
        }
        if ids_complete {
            let gone: Vec<String> = tx.keys(&issues).filter(|id| !seen.contains(id)).collect();
            for id in gone {
                tx.delete(&issues, id.as_str())?;
                report.touched.push(id);
            }
        }
        if tx.pending_ops() == 0 {
            tx.rollback();
        } else {
            let (hash, _) = tx.commit_with(
                // No message: every byte of a small change is paid on the wire.
                CommitOptions::default().with_time(now_seconds()),
            );
            // The new change is the file's state: its only ancestor is the old file heads.
            if let Some(hash) = hash {
                self.file_heads = vec![hash];
            }
            report.change = hash;
        }
        for (id, _, hash) in changed {
            self.lines.insert(id, hash);
        }
        self.dirty.extend(report.touched.iter().cloned());
        Ok(report)
    }

    fn genesis(
        &mut self,
        file: &Document,
        changed: Vec<(String, Map<String, Value>, u64)>,
        mut report: ImportReport,
    ) -> Result<ImportReport> {
        if changed.is_empty() {
            // An empty file matches the root change: whatever peers sent is projected.
            self.file_heads = self.root_heads.clone();
        } else {
            let actor = derived_actor(&[
                b"symphony-sync/genesis",
                self.tracker.as_bytes(),
                file.text().as_bytes(),
            ]);
            let fresh = self.doc.get_heads() == self.root_heads;
            // The genesis must depend on the root change alone to be the same change on
            // every node: made in place on a fresh document, else beside it and applied
            // (a peer's identical genesis makes that a no-op).
            let mut beside = if fresh {
                None
            } else {
                Some(root(&self.tracker)?)
            };
            let doc = beside.as_mut().unwrap_or(&mut self.doc);
            doc.set_actor(actor);
            let made = write_genesis(doc, &self.issues, file.style(), &changed);
            doc.set_actor(self.actor.clone());
            let hash = made?;
            if let Some(beside) = beside {
                let changes: Vec<Change> = beside.get_last_local_change().into_iter().collect();
                self.apply_changes(changes)?;
            }
            report.touched = changed.iter().map(|(id, _, _)| id.clone()).collect();
            report.change = hash;
            report.genesis = true;
            self.file_heads = hash.into_iter().collect();
        }
        if self.file_heads != self.doc.get_heads() {
            self.dirty.extend(self.ids());
        }
        for (id, _, hash) in changed {
            self.lines.insert(id, hash);
        }
        Ok(report)
    }

    /// Imports the file, then projects the document into it, under the tracker lock: only
    /// lines of issues changed since the file heads are rewritten. A file that changes
    /// between the import and the write is imported again (three tries, then
    /// [`SyncError::Busy`]); a line that does not parse blocks the write (the tracker refuses
    /// to rewrite such a file), so it is never overwritten. A missing file is refused
    /// ([`TrackerError::Missing`]) and nothing is imported or written.
    pub fn sync_file(&mut self, store: &Store) -> Result<FileSync> {
        self.sync_file_staged(store, &mut |_| Ok(()))
    }

    /// [`Replica::sync_file`], calling `persist` after the import and before the file is
    /// written, so the changes are durable before the projection shows them.
    pub fn sync_file_staged(
        &mut self,
        store: &Store,
        persist: &mut dyn FnMut(&Replica) -> Result<()>,
    ) -> Result<FileSync> {
        for _ in 0..3 {
            // A missing file is refused, not imported as "every issue deleted": a checkout
            // in progress or a slip of `rm` must not empty the document on every node.
            let file = store.read()?;
            let import = self.import(&file)?;
            let renumbered = self.resolve_creations()?;
            persist(self)?;
            let touched: Vec<String> = if self.file_heads.is_empty() {
                self.ids()
            } else {
                self.dirty.iter().cloned().collect()
            };
            let heads = self.doc.get_heads();
            if touched.is_empty() {
                self.file_heads = heads;
                self.dirty.clear();
                return Ok(FileSync {
                    import,
                    projection: WriteReport::default(),
                    renumbered,
                });
            }
            let stamp = file.stamp();
            let records: Vec<(String, Option<Map<String, Value>>)> = touched
                .into_iter()
                .map(|id| {
                    let record = self.issue(&id);
                    (id, record)
                })
                .collect();
            let style = self.style();
            let written = store.transact(|tx| {
                if let Some(style) = style {
                    tx.set_style(style);
                }
                if tx.document().stamp() != stamp {
                    return Err(TrackerError::ConcurrentModification {
                        path: store.path().to_path_buf(),
                    });
                }
                for (id, record) in &records {
                    project_one(tx, id, record.as_ref())?;
                }
                Ok(())
            });
            match written {
                Ok(((), projection)) => {
                    self.file_heads = heads;
                    self.dirty.clear();
                    for id in projection.touched() {
                        self.lines.remove(id);
                    }
                    return Ok(FileSync {
                        import,
                        projection,
                        renumbered,
                    });
                }
                Err(TrackerError::ConcurrentModification { .. }) => continue,
                Err(error) => return Err(error.into()),
            }
        }
        Err(SyncError::Busy {
            path: store.path().to_path_buf(),
        })
    }

    /// Moves this node's losing concurrent creations to new ids (module docs). Returns the
    /// `(old id, new id)` pairs moved. Call after applying remote changes.
    pub fn resolve_creations(&mut self) -> Result<Vec<(String, String)>> {
        let conflicted: Vec<String> = self
            .doc
            .map_range(&self.issues, ..)
            .filter(|item| item.conflict)
            .map(|item| item.key.into_owned())
            .collect();
        let mut moves = Vec::new();
        for id in conflicted {
            let winner = self.doc.get(&self.issues, id.as_str())?.map(|(_, obj)| obj);
            for (value, obj) in self.doc.get_all(&self.issues, id.as_str())? {
                let mine = matches!(&obj, ObjId::Id(_, actor, _) if *actor == self.actor);
                if !mine
                    || Some(&obj) == winner.as_ref()
                    || !matches!(value, automerge::Value::Object(ObjType::Map))
                    || self.doc.get(&obj, MOVED_KEY)?.is_some()
                {
                    continue;
                }
                moves.push((id.clone(), obj));
            }
        }
        let mut done = Vec::new();
        if moves.is_empty() {
            return Ok(done);
        }
        let mut taken: HashSet<String> = self.ids().into_iter().collect();
        let scheme = self
            .ids
            .scheme(taken.iter())
            .map_err(|e| SyncError::Layout(format!("renumbering a concurrent creation: {e}")))?;
        let issues = self.issues.clone();
        let mut tx = self.doc.transaction();
        for (old, obj) in moves {
            let new = scheme.next(taken.iter(), |id| taken.contains(id));
            let mut record = read_record(&tx, &obj);
            record.insert("id".into(), new.clone().into());
            if record.contains_key("identifier") {
                record.insert("identifier".into(), new.clone().into());
            }
            record.insert(RENUMBERED_FROM.into(), old.clone().into());
            create_record(&mut tx, &issues, &new, &record)?;
            tx.put(&obj, MOVED_KEY, new.as_str())?;
            tracing::info!(issue_id = %old, renumbered_to = %new, "concurrent creation moved to a new id");
            taken.insert(new.clone());
            self.dirty.insert(old.clone());
            self.dirty.insert(new.clone());
            done.push((old, new));
        }
        tx.commit_with(
            CommitOptions::default()
                .with_message("renumber")
                .with_time(now_seconds()),
        );
        Ok(done)
    }
}

/// `style` as three digits: item space, key space, ASCII escaping.
fn encode_style(style: JsonStyle) -> String {
    [style.item_space, style.key_space, style.ascii]
        .iter()
        .map(|on| if *on { '1' } else { '0' })
        .collect()
}

fn decode_style(text: &str) -> Option<JsonStyle> {
    let bits: Vec<bool> = text.chars().map(|c| c == '1').collect();
    (bits.len() == 3 && text.chars().all(|c| c == '0' || c == '1')).then(|| JsonStyle {
        item_space: bits[0],
        key_space: bits[1],
        ascii: bits[2],
    })
}

/// The genesis transaction: the file's style and every record, timestamp 0.
fn write_genesis(
    doc: &mut Automerge,
    issues: &ObjId,
    style: JsonStyle,
    records: &[(String, Map<String, Value>, u64)],
) -> Result<Option<ChangeHash>> {
    let mut tx = doc.transaction();
    let written = tx
        .put(ROOT, STYLE_KEY, encode_style(style))
        .map_err(SyncError::from)
        .and_then(|()| {
            records.iter().try_for_each(|(id, record, _)| {
                create_record(&mut tx, issues, id, record).map(drop)
            })
        });
    match written {
        Ok(()) => Ok(tx
            .commit_with(
                CommitOptions::default()
                    .with_message("genesis")
                    .with_time(0),
            )
            .0),
        Err(error) => {
            tx.rollback();
            Err(error)
        }
    }
}

fn refusal(index: usize, error: &TrackerError) -> Refusal {
    tracing::warn!(line = index + 1, %error, "record not imported");
    Refusal {
        line: index + 1,
        message: format!("{error}: not imported"),
    }
}

/// Writes the document's version of one issue into the transaction.
fn project_one(
    tx: &mut symphony_tracker::Transaction<'_>,
    id: &str,
    record: Option<&Map<String, Value>>,
) -> symphony_tracker::Result<()> {
    let record = match record {
        Some(record) if record.get("id").and_then(Value::as_str) != Some(id) => {
            tracing::warn!(issue_id = %id, "document record's id differs from its key: not projected");
            return Ok(());
        }
        other => other,
    };
    let current = tx.get(id)?.cloned();
    match (record, current) {
        (Some(record), Some(current)) => {
            if *record != current || !record.keys().eq(current.keys()) {
                *tx.get_mut(id)? = record.clone();
            }
            // Every clone renders a touched record alike, whatever style a human typed it
            // in, so nodes with the same document write the same bytes.
            tx.restyle(id)?;
        }
        (Some(record), None) => tx.append(record.clone())?,
        (None, Some(_)) => tx.remove(id)?,
        (None, None) => {}
    }
    Ok(())
}
