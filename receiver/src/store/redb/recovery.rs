//! Opening the database, and recovering from I/O errors without a restart.
//!
//! **Fast recovery after a crash.** Every write transaction sets redb's quick repair
//! ([`redb::WriteTransaction::set_quick_repair`]): each commit also saves the allocator state
//! and uses a two-phase commit, so reopening after a crash loads that state instead of
//! walking the whole file (milliseconds, whatever its size, instead of seconds per GB).
//! [`open_database`] ends with one such commit, so the file is quick to repair from the first
//! moment. A file whose last commit was not a quick-repair one (written by an older receiver)
//! still gets redb's full repair once, with its progress logged.
//!
//! **I/O errors.** redb poisons a [`Database`] at its first I/O error: every later
//! transaction fails with `PreviousIo` until the file is reopened. So when a commit or a read
//! fails with an I/O error (a full disk, `EIO`), the store becomes *unavailable* with the
//! reason ([`Handle::fail`]), drops the database, and the writer thread retries
//! [`Handle::try_recover`] with back-off:
//! 1. reopen the file, which writes nothing but its header in place (queries are answered
//!    again from here on, even while the disk is still full);
//! 2. check that the file system has room for one more largest push: `headroom` bytes
//!    (`--max-body-bytes`) written and synced to a scratch file beside the database
//!    (`<db>.space-probe`), then deleted;
//! 3. commit an empty durable write transaction.
//!
//! Only then are writes accepted again. Meanwhile pushes and `/healthz` answer 503 with the
//! reason. Nothing acknowledged is lost: an acknowledged push is in a committed transaction,
//! and a failed commit leaves the last committed one intact (copy-on-write pages, two-phase
//! commit).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use redb::{Database, Durability};

use super::StoreError;
use crate::metrics::Metrics;

/// Opens (or creates) the database at `path` and checks its schema; its last commit is a
/// quick-repair one.
pub(super) fn open_database(path: &Path) -> Result<Database, StoreError> {
    let db = open_file(path)?;
    super::migrate::create_or_check(&db)?;
    commit_empty(&db)?;
    Ok(db)
}

/// Opens the file: after a crash, loads the allocator state of the last (quick-repair)
/// commit, or runs redb's full repair, logging its progress. Writes nothing but the header
/// in place, so it works on a full disk.
fn open_file(path: &Path) -> Result<Database, StoreError> {
    let mut builder = Database::builder();
    let file = path.display().to_string();
    builder.set_repair_callback(move |session| {
        tracing::warn!(
            db = %file,
            progress_percent = (session.progress() * 100.0).round(),
            "database was not closed cleanly and has no quick-repair state: full repair"
        );
    });
    Ok(builder.create(path)?)
}

/// Commits an empty durable quick-repair transaction: saves the allocator state, and proves
/// the file can be written and synced.
fn commit_empty(db: &Database) -> Result<(), StoreError> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate);
    txn.set_quick_repair(true);
    txn.commit()?;
    Ok(())
}

/// The reason, if `e` is an I/O error (one that poisons the database until it is reopened).
pub(super) fn io_reason(e: &StoreError) -> Option<String> {
    match e {
        StoreError::Db(e) => match &**e {
            redb::Error::Io(io) => Some(io.to_string()),
            redb::Error::PreviousIo => Some("an earlier I/O error".into()),
            _ => None,
        },
        _ => None,
    }
}

/// One opening of the database.
#[derive(Clone)]
pub(super) struct Opened {
    /// Which opening this is (0 for the first, then one more per reopen), so a failure seen
    /// on an old handle never closes a newer one.
    pub(super) generation: u64,
    /// The database.
    pub(super) db: Arc<Database>,
}

/// The open database and the store's health, shared by readers and the writer thread.
pub(super) struct Handle {
    /// The database file.
    path: PathBuf,
    /// Free bytes the file system must have before writes resume after an I/O error.
    headroom: u64,
    /// The open database; `None` from an I/O error until it is reopened.
    db: RwLock<Option<Opened>>,
    /// Why writes are refused; `None` while the store is writable.
    unavailable: RwLock<Option<String>>,
    /// The generation of the last opening.
    generation: AtomicU64,
    /// `receiver_store_available` and `receiver_store_reopens_total`.
    metrics: Arc<Metrics>,
}

impl Handle {
    /// Opens the database; a failure here is fatal (the receiver does not start).
    pub(super) fn open(
        path: &Path,
        headroom: u64,
        metrics: Arc<Metrics>,
    ) -> Result<Self, StoreError> {
        let db = open_database(path)?;
        metrics.store_available.set(1);
        Ok(Self {
            path: path.to_owned(),
            headroom,
            db: RwLock::new(Some(Opened {
                generation: 0,
                db: Arc::new(db),
            })),
            unavailable: RwLock::new(None),
            generation: AtomicU64::new(0),
            metrics,
        })
    }

    /// The open database, or [`StoreError::Unavailable`] while it is closed after an I/O
    /// error.
    pub(super) fn current(&self) -> Result<Opened, StoreError> {
        let slot = self.db.read().unwrap_or_else(|e| e.into_inner());
        slot.clone().ok_or_else(|| {
            StoreError::Unavailable(
                self.unavailable()
                    .unwrap_or_else(|| "the database is being reopened".into()),
            )
        })
    }

    /// The database file.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Why writes are refused, if they are.
    pub(super) fn unavailable(&self) -> Option<String> {
        self.unavailable
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// An I/O error on the opening `generation`: refuse writes with `reason` and close that
    /// opening (a newer one is left alone).
    pub(super) fn fail(&self, generation: u64, reason: &str) {
        let closed = {
            let mut slot = self.db.write().unwrap_or_else(|e| e.into_inner());
            match &*slot {
                Some(o) if o.generation == generation => slot.take(),
                Some(_) => return,
                None => None,
            }
        };
        let mut unavailable = self.unavailable.write().unwrap_or_else(|e| e.into_inner());
        if unavailable.is_none() {
            tracing::error!(
                db = %self.path.display(),
                reason,
                "store unavailable: I/O error; writes are refused until the database is reopened"
            );
        }
        *unavailable = Some(reason.to_owned());
        drop(unavailable);
        self.metrics.store_available.set(0);
        // Closed outside the locks; the last reader still using it closes the file.
        drop(closed);
    }

    /// One attempt to make the store writable again (see the module documentation); the
    /// error is the reason it is still unavailable. Called by the writer thread only.
    pub(super) fn try_recover(&self) -> Result<(), String> {
        // The read guard must be gone before `reopen` takes the write lock.
        let current = self.db.read().unwrap_or_else(|e| e.into_inner()).clone();
        let opened = match current {
            Some(opened) => opened,
            None => self.reopen()?,
        };
        self.check_headroom().map_err(|e| {
            format!(
                "{e} (no room for {} bytes beside the database)",
                self.headroom
            )
        })?;
        if let Err(e) = commit_empty(&opened.db) {
            let reason = io_reason(&e).unwrap_or_else(|| e.to_string());
            self.fail(opened.generation, &reason);
            return Err(reason);
        }
        *self.unavailable.write().unwrap_or_else(|e| e.into_inner()) = None;
        self.metrics.store_available.set(1);
        tracing::info!(db = %self.path.display(), "store available again: writes accepted");
        Ok(())
    }

    /// Reopens the file (its schema was checked at the first opening).
    fn reopen(&self) -> Result<Opened, String> {
        let db = open_file(&self.path).map_err(|e| match &e {
            StoreError::Db(inner) if matches!(**inner, redb::Error::DatabaseAlreadyOpen) => {
                "the failed database handle is still in use by a query".to_owned()
            }
            _ => io_reason(&e).unwrap_or_else(|| e.to_string()),
        })?;
        let opened = Opened {
            generation: self.generation.fetch_add(1, Ordering::Relaxed) + 1,
            db: Arc::new(db),
        };
        *self.db.write().unwrap_or_else(|e| e.into_inner()) = Some(opened.clone());
        self.metrics.store_reopens.inc();
        tracing::info!(db = %self.path.display(), "database reopened; queries are answered again");
        Ok(opened)
    }

    /// Writes and syncs `headroom` bytes to a scratch file beside the database, then deletes it.
    fn check_headroom(&self) -> std::io::Result<()> {
        let mut probe = self.path.as_os_str().to_owned();
        probe.push(".space-probe");
        let probe = PathBuf::from(probe);
        let result = (|| {
            let mut file = std::fs::File::create(&probe)?;
            let chunk = vec![0u8; 64 * 1024];
            let mut left = self.headroom;
            while left > 0 {
                let n = left.min(chunk.len() as u64) as usize;
                file.write_all(&chunk[..n])?;
                left -= n as u64;
            }
            file.sync_data()
        })();
        let _ = std::fs::remove_file(&probe);
        result
    }
}
