//! Publishing a release's outputs so that no crash leaves an output without its ledger entry, nor
//! an entry without its output.
//!
//! A file system rename and a database commit cannot be one atomic step, so a release keeps an
//! intent log beside its outputs, `OUT/.veil/ledger-intents.tsv`, and follows this order for
//! every output:
//!
//! 1. **intent**: the line `release \t released SOP UID \t output path \t SHA-256` is appended to
//!    the log (one `write`, before anything becomes visible);
//! 2. **publish**: the output is renamed into place (the pipeline's temp + rename);
//! 3. **record**: its ledger entry is queued; queued entries are committed in one transaction
//!    every [`BATCH`] outputs (`--ledger-batch`), at least every [`MAX_WAIT`], and when the
//!    release ends. After each commit the log is emptied.
//!
//! An output is released once its entry commits. [`reconcile`] — run before every release into
//! `OUT` and by `veil ledger reconcile` — rolls back every intent whose entry is not in the ledger
//! by removing its output (when the file there is still the one the intent names). Because the
//! intent precedes the rename and the log is emptied only after the commit, every output a crash
//! left without an entry is listed; because an entry is queued only after its rename, and entries
//! of outputs that vanished before the commit are dropped, every entry has its output. A crash
//! after the commit but before the pipeline's own journal line makes the resumed run meet the
//! identical file again: it is recognised as already recorded ([`Store::is_recorded`]) and gets
//! no second entry.
//!
//! **Releases with several writers.** A release whose outputs are published by many processes (a
//! Spark job's tasks, `veil.spark.release`) has one coordinator that holds the directory's lock
//! ([`OutLock`]) from before the first task until after the last, and settles the directory at
//! both ends. Each task publishes through [`Publisher::open_worker`]: the same order as above,
//! with an intent log of its own under `OUT/.veil/ledger-intents.d/`, which [`reconcile`] reads
//! with the main log. A task killed between a rename and its commit leaves its intents there; its
//! retry meets the identical outputs and records them (or finds them recorded), and whatever no
//! retry recorded is rolled back when the coordinator settles the directory at the end — or, if
//! the coordinator died too, by the next release into `OUT` or `veil ledger reconcile`. A task that
//! is still running when the job ends (cancelled after a failure, or a straggler) must not
//! publish after that last settling: every worker holds a shared lock on
//! `ledger-intents.d/<release>.active` while it publishes, and [`OutLock::close_release`] takes
//! it exclusively — waiting for running workers to end — and leaves `<release>.closed` beside
//! it, which every later worker of the release sees and refuses to publish under.
//!
//! Scope: process crashes (SIGKILL, panic, OOM kill). Surviving power loss would also need the
//! intent line and the output fsynced before the rename and SQLite's `synchronous = FULL`.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::ledger::NewEntry;
use crate::{Result, Store, StoreError};

/// Outputs recorded per ledger transaction, by default.
pub const BATCH: usize = 256;
/// A partly filled batch is committed once its oldest output has waited this long.
pub const MAX_WAIT: Duration = Duration::from_secs(2);

/// The intent log of an output directory.
pub fn intent_log(out: &Path) -> PathBuf {
    out.join(".veil").join("ledger-intents.tsv")
}

/// Where the workers of a release with several writers keep their intent logs.
pub fn intent_dir(out: &Path) -> PathBuf {
    out.join(".veil").join("ledger-intents.d")
}

/// The file a release's workers hold shared while they publish.
fn active_path(out: &Path, release_id: &str) -> PathBuf {
    intent_dir(out).join(format!("{release_id}.active"))
}

/// Present once the coordinator has closed the release to its workers.
fn closed_path(out: &Path, release_id: &str) -> PathBuf {
    intent_dir(out).join(format!("{release_id}.closed"))
}

/// How long [`OutLock::close_release`] waits for running workers to end, by default.
pub const CLOSE_WAIT: Duration = Duration::from_secs(600);

fn lock_path(out: &Path) -> PathBuf {
    out.join(".veil").join("release.lock")
}

/// Takes the output directory's release lock: one release (or reconcile) at a time per `OUT`.
/// Held until the returned file is dropped (the OS releases it when the process dies).
fn lock(out: &Path) -> Result<File> {
    let dir = out.join(".veil");
    std::fs::create_dir_all(&dir)?;
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_path(out))?;
    #[cfg(unix)]
    match rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
            return Err(StoreError::Usage(format!(
                "{}: another release into this directory is running; wait for it to finish",
                out.display()
            )))
        }
        Err(e) => return Err(std::io::Error::from(e).into()),
    }
    Ok(f)
}

/// An output directory's release lock, held by the coordinator of a release whose outputs
/// workers publish ([`Publisher::open_worker`]): no other release or reconcile runs in `OUT`
/// until it is dropped.
pub struct OutLock {
    _file: File,
    out: PathBuf,
}

impl OutLock {
    /// Takes the lock (a usage error naming `out` when another release holds it).
    pub fn take(out: &Path) -> Result<OutLock> {
        Ok(OutLock {
            _file: lock(out)?,
            out: out.to_path_buf(),
        })
    }

    /// Settles what was published without an entry ([`reconcile`]) under this lock: call it
    /// before the workers start and after [`OutLock::close_release`].
    pub fn reconcile(&self, store: &Store) -> Result<Reconciled> {
        reconcile_locked(store, &self.out)
    }

    /// Closes release `release_id` to its workers: waits (up to `wait`) until no worker is
    /// publishing, then marks the release closed, so that a worker starting later refuses. After
    /// this, [`OutLock::reconcile`] settles everything the workers left.
    pub fn close_release(&self, release_id: &str, wait: Duration) -> Result<()> {
        std::fs::create_dir_all(intent_dir(&self.out))?;
        let active = open_rw(&active_path(&self.out, release_id))?;
        let start = Instant::now();
        loop {
            match rustix::fs::flock(&active, rustix::fs::FlockOperation::NonBlockingLockExclusive)
            {
                Ok(()) => break,
                Err(e) if e == rustix::io::Errno::WOULDBLOCK && start.elapsed() < wait => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
                    return Err(StoreError::Usage(format!(
                        "{}: workers of release {release_id} are still publishing after {} s; when they have ended, run `veil ledger reconcile {}`",
                        self.out.display(),
                        wait.as_secs(),
                        self.out.display()
                    )))
                }
                Err(e) => return Err(std::io::Error::from(e).into()),
            }
        }
        File::create(closed_path(&self.out, release_id))?.sync_all()?;
        Ok(())
    }
}

fn open_rw(path: &Path) -> Result<File> {
    Ok(OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?)
}

/// What [`reconcile`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Reconciled {
    /// Intents read from the log.
    pub intents: usize,
    /// Intents whose entry is in the ledger (the output is released).
    pub recorded: usize,
    /// Outputs removed because their entry never committed.
    pub rolled_back: usize,
    /// Intents whose output never reached its place (nothing to undo).
    pub not_published: usize,
    /// Outputs left alone because the file there is not the one the intent names.
    pub foreign: usize,
}

/// One line of the intent log.
struct Intent<'a> {
    released_sop: &'a str,
    output_path: &'a str,
    sha256: &'a str,
}

fn parse_intent(line: &str) -> Option<Intent<'_>> {
    let mut it = line.split('\t');
    let _release = it.next()?;
    let released_sop = it.next()?;
    let output_path = it.next()?;
    let sha256 = it.next()?;
    (sha256.len() == 64 && it.next().is_none()).then_some(Intent {
        released_sop,
        output_path,
        sha256,
    })
}

fn file_sha256(path: &Path) -> std::io::Result<String> {
    let mut h = Sha256::new();
    std::io::copy(&mut File::open(path)?, &mut h)?;
    Ok(hex::encode(h.finalize()))
}

/// Settles what a crashed release left in `out` (see the module docs) and empties its intent
/// log. Takes the directory's release lock for the duration.
pub fn reconcile(store: &Store, out: &Path) -> Result<Reconciled> {
    let _lock = lock(out)?;
    reconcile_locked(store, out)
}

fn reconcile_locked(store: &Store, out: &Path) -> Result<Reconciled> {
    let mut r = Reconciled::default();
    let log = intent_log(out);
    if settle_log(store, out, &log, &mut r)? {
        OpenOptions::new().write(true).open(&log)?.set_len(0)?;
    }
    // Workers' logs: each removed once settled (workers no longer run while the lock is held).
    let workers = match std::fs::read_dir(intent_dir(out)) {
        Ok(d) => d.collect::<std::io::Result<Vec<_>>>()?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let mut paths: Vec<PathBuf> = workers.into_iter().map(|e| e.path()).collect();
    paths.sort();
    for path in paths
        .iter()
        .filter(|p| p.extension().is_some_and(|x| x == "tsv"))
    {
        settle_log(store, out, path, &mut r)?;
        std::fs::remove_file(path)?;
    }
    Ok(r)
}

/// Settles the intents of one log into `r`; false when the log does not exist.
fn settle_log(store: &Store, out: &Path, log: &Path, r: &mut Reconciled) -> Result<bool> {
    let file = match File::open(log) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    for line in std::io::BufReader::new(file).lines() {
        let line = line?;
        // A line cut short was never followed by its rename: nothing to undo.
        let Some(i) = parse_intent(&line) else {
            continue;
        };
        r.intents += 1;
        if store.is_recorded(i.released_sop, i.output_path, i.sha256)? {
            r.recorded += 1;
            continue;
        }
        let path = out.join(i.output_path);
        match file_sha256(&path) {
            Ok(d) if d == i.sha256 => {
                std::fs::remove_file(&path)?;
                r.rolled_back += 1;
            }
            Ok(_) => r.foreign += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => r.not_published += 1,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(true)
}

/// How an output was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// Published now; its entry is queued for the next commit.
    Queued,
    /// Already in place and recorded by an earlier (interrupted) run: no new entry.
    AlreadyRecorded,
}

struct Queued {
    entry: NewEntry,
    output: PathBuf,
}

struct Inner {
    log: File,
    queue: Vec<Queued>,
    oldest: Option<Instant>,
    recorded: u64,
    already: u64,
    failed: bool,
}

/// The ledger side of one release into one output directory.
pub struct Publisher<'s> {
    store: &'s Store,
    out: PathBuf,
    release_id: String,
    batch: usize,
    inner: Mutex<Inner>,
    /// The directory's lock; for a worker, its shared hold on the release's `.active` file.
    _lock: Option<File>,
    /// A worker's own intent log, removed when it finishes with every entry committed.
    worker_log: Option<PathBuf>,
}

impl<'s> Publisher<'s> {
    /// Locks `out`, settles what an earlier crashed release left there ([`reconcile`]) and opens
    /// the intent log. `batch`: outputs per ledger transaction ([`BATCH`] unless tuned).
    pub fn open(
        store: &'s Store,
        out: &Path,
        release_id: &str,
        batch: usize,
    ) -> Result<(Publisher<'s>, Reconciled)> {
        let lock = lock(out)?;
        let settled = reconcile_locked(store, out)?;
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(intent_log(out))?;
        let publisher = Publisher::with_log(store, out, release_id, batch, log, Some(lock), None);
        Ok((publisher, settled))
    }

    /// A publisher for one worker of a release whose coordinator holds `out`'s lock
    /// ([`OutLock`]) and settles the directory before and after the workers run: no lock, no
    /// reconcile, and an intent log of its own under [`intent_dir`].
    pub fn open_worker(
        store: &'s Store,
        out: &Path,
        release_id: &str,
        batch: usize,
    ) -> Result<Publisher<'s>> {
        let dir = intent_dir(out);
        std::fs::create_dir_all(&dir)?;
        // Shared with the release's other workers; the coordinator takes it exclusively to close.
        let active = open_rw(&active_path(out, release_id))?;
        rustix::fs::flock(&active, rustix::fs::FlockOperation::LockShared)
            .map_err(std::io::Error::from)?;
        if closed_path(out, release_id).exists() {
            return Err(StoreError::Usage(format!(
                "release {release_id} is closed: its coordinator has ended it, and this task publishes nothing"
            )));
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let path = dir.join(format!("{release_id}-{}-{nanos}.tsv", std::process::id()));
        let log = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)?;
        Ok(Publisher::with_log(
            store,
            out,
            release_id,
            batch,
            log,
            Some(active),
            Some(path),
        ))
    }

    fn with_log(
        store: &'s Store,
        out: &Path,
        release_id: &str,
        batch: usize,
        log: File,
        lock: Option<File>,
        worker_log: Option<PathBuf>,
    ) -> Publisher<'s> {
        Publisher {
            store,
            out: out.to_path_buf(),
            release_id: release_id.to_string(),
            batch: batch.max(1),
            inner: Mutex::new(Inner {
                log,
                queue: Vec::new(),
                oldest: None,
                recorded: 0,
                already: 0,
                failed: false,
            }),
            _lock: lock,
            worker_log,
        }
    }

    /// Publishes one output: writes its intent, calls `rename` (which puts the file at `output`,
    /// `entry.output_path` relative to the output directory) and queues its entry. When `output`
    /// is already in place (a resumed run met an identical file) and recorded, `rename` still
    /// runs (the pipeline then has nothing to move) but no entry is added.
    pub fn publish(
        &self,
        entry: NewEntry,
        output: &Path,
        rename: &mut dyn FnMut() -> std::io::Result<()>,
    ) -> Result<Published> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.failed {
            return Err(StoreError::Usage(
                "the release's ledger could not be written; nothing more is published".into(),
            ));
        }
        if output.exists()
            && self.store.is_recorded(
                &entry.released.sop,
                &entry.output_path,
                &entry.output_sha256,
            )?
        {
            rename()?;
            inner.already += 1;
            return Ok(Published::AlreadyRecorded);
        }
        let fields = [
            self.release_id.as_str(),
            &entry.released.sop,
            &entry.output_path,
            &entry.output_sha256,
        ];
        if fields.iter().any(|f| f.contains(['\t', '\n', '\r'])) || entry.output_sha256.len() != 64
        {
            return Err(StoreError::Usage(
                "ledger: an output path, UID or digest contains a tab or line break, or the digest is not SHA-256".into(),
            ));
        }
        let line = format!("{}\n", fields.join("\t"));
        inner.log.write_all(line.as_bytes())?;
        rename()?;
        inner.queue.push(Queued {
            entry,
            output: output.to_path_buf(),
        });
        let oldest = *inner.oldest.get_or_insert_with(Instant::now);
        if inner.queue.len() >= self.batch || oldest.elapsed() >= MAX_WAIT {
            self.flush_locked(&mut inner)?;
        }
        Ok(Published::Queued)
    }

    /// Commits every queued entry. On failure the queued outputs are removed (they were never
    /// released) and the publisher refuses further outputs.
    fn flush_locked(&self, inner: &mut Inner) -> Result<()> {
        inner.oldest = None;
        if inner.queue.is_empty() {
            return Ok(());
        }
        let queue = std::mem::take(&mut inner.queue);
        // An output taken back after it was published (the pipeline retracts conflicting
        // versions of one instance) was not released: it gets no entry.
        let entries: Vec<NewEntry> = queue
            .iter()
            .filter(|q| q.output.exists())
            .map(|q| q.entry.clone())
            .collect();
        match self.store.append_batch(&entries) {
            Ok(_) => {
                inner.recorded += entries.len() as u64;
                inner.log.set_len(0)?;
                Ok(())
            }
            Err(e) => {
                inner.failed = true;
                for q in &queue {
                    let _ = std::fs::remove_file(&q.output);
                }
                inner.log.set_len(0)?;
                Err(e)
            }
        }
    }

    /// Takes back a published output before the release ends (the pipeline holds back both
    /// versions of an instance when a second input contradicts the first): a queued entry is
    /// dropped; a committed one — in this run or an interrupted earlier one — gets a retraction
    /// entry ([`Store::retract`]). Call it while the file is still in place and remove the file
    /// afterwards; calling it again (after a crash in between) changes nothing.
    pub fn retract(&self, output: &Path, output_relative: &Path) -> Result<()> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = inner.queue.iter().position(|q| q.output == output) {
            inner.queue.remove(i);
            return Ok(());
        }
        let sha256 = match file_sha256(output) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        // Outputs are named `<released SOP Instance UID>.dcm`; the ledger is searched by that
        // UID (indexed) and the path.
        let released_sop = output
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let relative = output_relative.display().to_string();
        if let Some(e) = self
            .store
            .retract(&released_sop, &relative, &sha256, &self.release_id)?
        {
            // (An entry of an interrupted earlier run was never counted here.)
            if e.release_id == self.release_id {
                inner.recorded = inner.recorded.saturating_sub(1);
            }
        }
        Ok(())
    }

    /// Commits what is queued and reports (entries recorded, outputs found already recorded).
    /// Call it once the pipeline has finished, whatever its outcome: published outputs must be
    /// recorded (or, if that fails, removed).
    pub fn finish(&self) -> Result<(u64, u64)> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if !inner.failed {
            self.flush_locked(&mut inner)?;
            // Everything this worker published is recorded: its log has nothing to settle.
            if let Some(path) = &self.worker_log {
                match std::fs::remove_file(path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                    _ => {}
                }
            }
        }
        Ok((inner.recorded, inner.already))
    }

    /// The output directory.
    pub fn out(&self) -> &Path {
        &self.out
    }
}
