//! The redb store (`receiver::store::Store`) against a plain in-memory model, as redb's own
//! `fuzz_redb.rs` does: every operation of a fuzzed sequence is applied to a real store in a
//! fresh temporary directory (on tmpfs where there is one, so fsyncs are cheap) and to a
//! `BTreeMap<id, run>`, and every answer is compared.
//!
//! Operations: insert one run, insert a batch concurrently (so group commit shares one
//! transaction), query a job by page (limit, cursor, and a byte bound on the page), walk all
//! of a job's pages, prune (retention) before a cutoff, move the store's clock, count, and
//! close and reopen the file.
//!
//! What must hold:
//! - ids are new, increasing in order of insertion, and never reused (not after a prune,
//!   not after a reopen);
//! - a push of a run already stored (same job, run id, attempt and summary) stores
//!   nothing and is answered with the stored run's id and receive time (`replayed`); once
//!   retention has deleted that run, the same push stores a new one;
//! - a page is the job's runs older than the cursor, newest first, at most `limit` of
//!   them, with `next` set to the last id exactly when older runs remain; the two
//!   spellings of a repository (`org/repo`, `repo`) are one job;
//! - with a byte bound, a page stops before the run that would take the JSON array of the
//!   page (`[`, runs, `,` between them, `]`) over it, but always holds at least one run;
//! - each stored value is byte for byte the JSON of the `StoredRun` as pushed: id,
//!   identity, `received_at` (the store's clock when it was committed), payload;
//! - a prune removes exactly the runs received before the cutoff and says how many;
//! - the count is the model's size, and all of it survives a reopen.
#![no_main]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use receiver::auth::canonical_repository;
use receiver::store::redb::RedbStore as Store;
use receiver::store::{NewRun, StoreOptions, job_key};
use summary::{Execution, RunSummary, StoredRun};

/// The store's clock, in Unix milliseconds; each input starts it at [`START_MS`].
static NOW_MS: AtomicU64 = AtomicU64::new(START_MS);
const START_MS: u64 = 1_767_225_600_000;

fn clock() -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(NOW_MS.load(Ordering::SeqCst))
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    })
}

const ORGS: [&str; 3] = ["o", "p", "my org"];
const REPOS: [&str; 6] = ["r", "o/r", "p/r", "x/y", "o/", "\"r\"\\é"];
const WORKFLOWS: [&str; 3] = ["w", "ci.yml", "w/\u{1F600}"];
const JOBS: [&str; 2] = ["j", "</script>"];
const ATTEMPTS: [&str; 3] = ["", "1", "2"];

#[derive(Arbitrary, Debug, Clone, Copy)]
struct Who {
    org: u8,
    repo: u8,
    workflow: u8,
    job: u8,
    attempt: u8,
}

impl Who {
    fn parts(self) -> [&'static str; 4] {
        let pick = |list: &[&'static str], i: u8| list[usize::from(i) % list.len()];
        [
            pick(&ORGS, self.org),
            pick(&REPOS, self.repo),
            pick(&WORKFLOWS, self.workflow),
            pick(&JOBS, self.job),
        ]
    }

    /// The job as the store keys it: the repository without a leading `org/`.
    fn job(self) -> [String; 4] {
        let [o, r, w, j] = self.parts();
        [o, canonical_repository(o, r), w, j].map(str::to_owned)
    }

    fn attempt(self) -> &'static str {
        ATTEMPTS[usize::from(self.attempt) % ATTEMPTS.len()]
    }

    fn key(self) -> Vec<u8> {
        let [o, r, w, j] = self.parts();
        job_key(o, r, w, j)
    }
}

#[derive(Arbitrary, Debug)]
enum Cursor {
    First,
    /// The `next` of this job's last page, if there was one.
    Next,
    /// Any id, existing or not.
    Id(u64),
    /// Near the ids in use.
    Recent(u8),
}

#[derive(Arbitrary, Debug)]
enum Op {
    Insert {
        who: Who,
        run_id: String,
        n: u8,
    },
    /// Concurrent inserts: group commit puts what is queued into one transaction (and a
    /// run may repeat one earlier in the same batch).
    Batch {
        runs: Vec<(Who, u8)>,
    },
    Query {
        who: Who,
        limit: u16,
        cursor: Cursor,
        max_bytes: Option<u16>,
    },
    /// Every page of a job, following `next` until it is `None`.
    Walk {
        who: Who,
        limit: u8,
    },
    /// Delete runs received more than `age_ms` before now.
    Prune {
        age_ms: u32,
    },
    Tick {
        ms: u32,
    },
    Count,
    Reopen,
}

#[derive(Arbitrary, Debug)]
struct Input {
    group_commit: bool,
    ops: Vec<Op>,
}

#[derive(Debug)]
struct Run {
    job: [String; 4],
    execution: Execution,
    received_ms: u64,
    received_at: String,
    n: u8,
}

/// What makes two pushes the same run: job, run id, attempt, summary.
type RunKey = ([String; 4], String, String, u8);

struct Model {
    runs: BTreeMap<u64, Run>,
    /// The stored run each pushed run is, while it is stored.
    twins: BTreeMap<RunKey, u64>,
    /// Every id ever handed out is below this.
    next_id: u64,
    /// Per job key, the `next` of the last page answered.
    cursors: BTreeMap<Vec<u8>, u64>,
}

/// The API's limits are 1 to 1000.
fn limit(l: u16) -> usize {
    if l >= 0xff00 {
        1000
    } else {
        usize::from(l % 12) + 1
    }
}

fn open(path: &Path, group_commit: bool) -> Store {
    let options = StoreOptions {
        group_commit,
        clock,
        ..Default::default()
    };
    Store::open(path, options, Arc::default()).expect("open the store")
}

impl Model {
    fn record(&mut self, who: Who, run_id: &str, n: u8, got: &receiver::store::Inserted) {
        let key: RunKey = (who.job(), run_id.to_owned(), who.attempt().to_owned(), n);
        if let Some(&twin) = self.twins.get(&key) {
            let stored = &self.runs[&twin];
            assert_eq!(
                (got.id, got.replayed, got.received_at.as_str()),
                (twin, true, stored.received_at.as_str()),
                "a repeated push of run {twin} ({key:?})"
            );
            return;
        }
        assert!(
            !got.replayed,
            "{key:?} replayed as {} but was never stored",
            got.id
        );
        assert!(
            got.id >= self.next_id,
            "id {} reused (next is {})",
            got.id,
            self.next_id
        );
        self.next_id = got.id + 1;
        let now = NOW_MS.load(Ordering::SeqCst);
        assert_eq!(
            got.received_at,
            summary::time::format_unix_millis(now as i64)
        );
        let run = Run {
            job: who.job(),
            execution: execution(who, run_id),
            received_ms: now,
            received_at: got.received_at.clone(),
            n,
        };
        self.runs.insert(got.id, run);
        self.twins.insert(key, got.id);
    }

    /// The stored value of run `id`: the JSON of its `StoredRun` (built through serde, so
    /// fields the wire format gains with defaults keep their defaults).
    fn value(&self, id: u64) -> Vec<u8> {
        let run = &self.runs[&id];
        let e = &run.execution;
        let stored: StoredRun = serde_json::from_value(serde_json::json!({
            "id": id,
            "organization": e.organization,
            "repository": e.repository,
            "workflow": e.workflow,
            "job": e.job,
            "run_id": e.run_id,
            "run_attempt": e.run_attempt,
            "received_at": run.received_at,
            "payload": payload(run.n),
        }))
        .unwrap();
        serde_json::to_vec(&stored).unwrap()
    }

    /// The model's page: `who`'s runs older than `before`, newest first, at most `limit`
    /// and (but for the first) within `max_bytes` as a JSON array; and `next`.
    fn page(
        &self,
        who: Who,
        limit: usize,
        before: Option<u64>,
        max_bytes: usize,
    ) -> (Vec<u64>, Option<u64>) {
        let job = who.job();
        let mut ids = Vec::new();
        let mut bytes = 1usize;
        let older = self
            .runs
            .range(..before.unwrap_or(u64::MAX))
            .rev()
            .filter(|(_, r)| r.job == job);
        for (id, _) in older {
            let len = self.value(*id).len() + 1;
            if ids.len() == limit || (!ids.is_empty() && bytes + len > max_bytes) {
                return (ids.clone(), ids.last().copied());
            }
            bytes += len;
            ids.push(*id);
        }
        (ids, None)
    }

    /// Checks one stored value against the model's run of that id; returns the id.
    fn check_value(&self, raw: &[u8]) -> u64 {
        let v: serde_json::Value = serde_json::from_slice(raw).unwrap_or_else(|e| {
            panic!(
                "stored value is not JSON ({e}): {}",
                String::from_utf8_lossy(raw)
            )
        });
        let id = v["id"].as_u64().expect("an id");
        assert!(self.runs.contains_key(&id), "id {id} is not in the model");
        let want = self.value(id);
        assert_eq!(
            String::from_utf8_lossy(raw),
            String::from_utf8_lossy(&want),
            "stored value of run {id}"
        );
        id
    }
}

fn execution(who: Who, run_id: &str) -> Execution {
    let [o, r, w, j] = who.parts();
    Execution {
        organization: o.into(),
        repository: r.into(),
        workflow: w.into(),
        job: j.into(),
        run_id: run_id.into(),
        run_attempt: who.attempt().into(),
    }
}

fn payload(n: u8) -> RunSummary {
    RunSummary {
        sample_count: u64::from(n),
        ..Default::default()
    }
}

fn new_run(who: Who, run_id: &str, n: u8) -> NewRun {
    NewRun::new(&execution(who, run_id), &payload(n)).unwrap()
}

fn query(
    store: &Store,
    model: &mut Model,
    who: Who,
    limit: usize,
    before: Option<u64>,
    max_bytes: Option<usize>,
) -> Option<u64> {
    let page = match max_bytes {
        None => store.query(&who.key(), limit, before),
        Some(max) => store.query_bounded(&who.key(), limit, before, max),
    }
    .expect("query");
    let ids: Vec<u64> = page.runs.iter().map(|r| model.check_value(r)).collect();
    let (want, next) = model.page(who, limit, before, max_bytes.unwrap_or(usize::MAX));
    assert_eq!(
        (&ids, page.next),
        (&want, next),
        "{who:?} limit {limit} before {before:?} max_bytes {max_bytes:?}"
    );
    match page.next {
        Some(n) => model.cursors.insert(who.key(), n),
        None => model.cursors.remove(&who.key()),
    };
    page.next
}

fuzz_target!(|input: Input| {
    let base = Path::new("/dev/shm");
    let dir = if base.is_dir() {
        tempfile::tempdir_in(base)
    } else {
        tempfile::tempdir()
    }
    .unwrap();
    let path = dir.path().join("fuzz.redb");
    NOW_MS.store(START_MS, Ordering::SeqCst);
    let rt = runtime();
    let mut store = open(&path, input.group_commit);
    let mut model = Model {
        runs: BTreeMap::new(),
        twins: BTreeMap::new(),
        next_id: 1,
        cursors: BTreeMap::new(),
    };
    for op in input.ops.iter().take(48) {
        match op {
            Op::Insert { who, run_id, n } => {
                let run_id: String = run_id.chars().take(64).collect();
                let got = rt
                    .block_on(store.insert(new_run(*who, &run_id, *n)))
                    .expect("insert");
                model.record(*who, &run_id, *n, &got);
            }
            Op::Batch { runs } => {
                let runs = &runs[..runs.len().min(32)];
                let inserts = runs
                    .iter()
                    .map(|(who, n)| store.insert(new_run(*who, "", *n)));
                let results = rt.block_on(futures::future::join_all(inserts));
                for ((who, n), got) in runs.iter().zip(results) {
                    model.record(*who, "", *n, &got.expect("insert"));
                }
            }
            Op::Query {
                who,
                limit: l,
                cursor,
                max_bytes,
            } => {
                let before = match cursor {
                    Cursor::First => None,
                    Cursor::Next => model.cursors.get(&who.key()).copied(),
                    Cursor::Id(id) => Some(*id),
                    Cursor::Recent(back) => {
                        Some(model.next_id.saturating_sub(u64::from(*back % 16)))
                    }
                };
                let max_bytes = max_bytes.map(usize::from);
                query(&store, &mut model, *who, limit(*l), before, max_bytes);
            }
            Op::Walk { who, limit: l } => {
                let l = usize::from(*l % 8) + 1;
                let mut before = None;
                let mut pages = 0;
                loop {
                    match query(&store, &mut model, *who, l, before, None) {
                        Some(next) => {
                            assert!(before.is_none_or(|b| next < b), "the cursor went backwards");
                            before = Some(next);
                        }
                        None => break,
                    }
                    pages += 1;
                    assert!(pages <= model.runs.len(), "pagination does not end");
                }
            }
            Op::Prune { age_ms } => {
                let cutoff = NOW_MS
                    .load(Ordering::SeqCst)
                    .saturating_sub(u64::from(*age_ms));
                let pruned = rt.block_on(store.prune_before(cutoff)).expect("prune");
                let before = model.runs.len();
                model.runs.retain(|_, r| r.received_ms >= cutoff);
                let runs = &model.runs;
                model.twins.retain(|_, id| runs.contains_key(id));
                assert_eq!(
                    pruned,
                    (before - model.runs.len()) as u64,
                    "cutoff {cutoff}"
                );
            }
            Op::Tick { ms } => {
                NOW_MS.fetch_add(u64::from(*ms), Ordering::SeqCst);
            }
            Op::Count => {
                assert_eq!(store.count().unwrap(), model.runs.len() as u64);
            }
            Op::Reopen => {
                rt.block_on(store.close());
                drop(store);
                store = open(&path, input.group_commit);
                assert_eq!(store.count().unwrap(), model.runs.len() as u64);
            }
        }
    }
    assert_eq!(store.count().unwrap(), model.runs.len() as u64);
    rt.block_on(store.close());
});
