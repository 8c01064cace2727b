//! The tracker as an Automerge document (design.md, "Sync"; docs/sync.md).
//!
//! - [`layout`]: how a JSON record lives in the document (registers, lists, paragraph lists
//!   for long text, stored key order).
//! - [`replica`]: one node's document — the root change, the deterministic genesis, import of
//!   the issues file field by field, projection through the tracker's minimal-diff writer,
//!   and the renumbering of concurrent creations.
//! - [`local`]: one clone's file, document and persistence kept in step.
//! - [`persist`]: the document on disk under `.symphony/sync/` — snapshot, append-only change
//!   log, crash-safe compaction, refusal of corrupt or foreign documents.
//! - [`node`]: the sync task of a node: heads on pubsub, sync messages on the mesh's sync
//!   stream, anti-entropy, hostile peers dropped and counted.
//! - [`tracker_name`]: the name all clones share, from the repository's root commit.
//! - [`session`]: the Automerge sync protocol with one peer, IO-free and size-bounded.

pub mod error;
pub mod layout;
pub mod local;
pub mod node;
pub mod persist;
pub mod replica;
pub mod session;
pub mod tracker_name;

pub use error::{Result, SyncError};
pub use local::LocalTracker;
pub use node::{SyncConfig, SyncNode, SyncStatus};
pub use replica::{FileSync, ImportReport, Refusal, Replica};
pub use tracker_name::tracker_name;
