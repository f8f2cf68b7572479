//! Files of every row format: a version-3 file (plain rows, as receivers before
//! compression wrote them) opens as version 4 without a rewrite, reads every run byte for
//! byte as before, and takes new, packed runs; a corrupt packed row is an error that names
//! the run, not a panic; runs packed in either format, by the request or by the writer,
//! read as the plain ones.

use std::sync::Arc;

use redb::{Database, ReadableTable};
use summary::Execution;

use super::schema::{META, META_SCHEMA, RUNS, SCHEMA_VERSION, run_key};
use super::{NewRun, RedbStore as Store, StoreError, StoreOptions};
use crate::store::codec::{FORMAT_SPLIT, FORMAT_ZSTD};
use crate::store::{Compression, job_key};

fn run(n: u32) -> NewRun {
    let execution = Execution {
        organization: "o".into(),
        repository: "o/r".into(),
        workflow: "w".into(),
        job: "j".into(),
        run_id: n.to_string(),
        run_attempt: String::new(),
    };
    let summary = summary::RunSummary {
        start_time: "2026-02-06T14:30:02.185Z".into(),
        end_time: "2026-02-06T14:40:02.185Z".into(),
        duration_seconds: 600.0 + f64::from(n),
        sample_count: u64::from(n),
        ..Default::default()
    };
    NewRun::of_push(&execution, &summary).unwrap()
}

/// A run with what format 2 cuts out: a histogram (base64) and timeline series.
fn rich(n: u32) -> NewRun {
    let execution = Execution {
        organization: "o".into(),
        repository: "o/r".into(),
        workflow: "w".into(),
        job: "j".into(),
        run_id: format!("rich-{n}"),
        run_attempt: String::new(),
    };
    let mut acc = summary::Accumulator::new(summary::SCALE_CORES);
    for i in 0..500 {
        acc.record(f64::from((i * 37 + n) % 400) / 100.0);
    }
    let cpu: Vec<u32> = (0..90).map(|i| 500 + (i * 7919 + n) % 300).collect();
    let max: Vec<u32> = cpu.iter().map(|v| v + 4).collect();
    let summary = serde_json::json!({
        "schema_version": 1,
        "histograms": { "cpu_cores": acc.encode() },
        "timeline": { "bucket_seconds": 10.0, "cpu": cpu, "cpu_max": max, "neg": [-3, 0, 5, -70] },
    });
    NewRun::new(&execution, &summary).unwrap()
}

fn options(compression: Compression) -> StoreOptions {
    StoreOptions {
        compression,
        ..StoreOptions::default()
    }
}

/// Every run of the job, newest first, as the query answers them.
fn all(store: &Store) -> Vec<Vec<u8>> {
    store
        .query(&job_key("o", "r", "w", "j"), 1000, None)
        .unwrap()
        .runs
}

/// The first byte of each stored value, newest first.
fn formats(path: &std::path::Path) -> Vec<u8> {
    let db = Database::open(path).unwrap();
    let txn = db.begin_read().unwrap();
    let runs = txn.open_table(RUNS).unwrap();
    runs.iter()
        .unwrap()
        .map(|r| r.unwrap().1.value()[0])
        .collect()
}

#[tokio::test]
async fn a_version_3_file_reads_byte_for_byte_and_takes_packed_runs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v3.redb");
    // A version-3 file: plain rows, the layout of version 3 (which version 4 keeps).
    let store = Store::open(&path, options(Compression::Off), Arc::default()).unwrap();
    for n in 1..=5 {
        store.insert(run(n)).await.unwrap();
    }
    store.close().await;
    drop(store);
    {
        let db = Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert(META_SCHEMA, 3)
            .unwrap();
        txn.commit().unwrap();
    }
    let before = {
        let db = Database::open(&path).unwrap();
        let txn = db.begin_read().unwrap();
        let runs = txn.open_table(RUNS).unwrap();
        runs.iter()
            .unwrap()
            .map(|r| r.unwrap().1.value().to_vec())
            .collect::<Vec<_>>()
    };
    assert!(before.iter().all(|v| v[0] == b'{'));

    let store = Store::open(&path, StoreOptions::default(), Arc::default()).unwrap();
    {
        let txn = store.db.current().unwrap().db.begin_read().unwrap();
        let meta = txn.open_table(META).unwrap();
        assert_eq!(meta.get(META_SCHEMA).unwrap().unwrap().value(), 4);
        assert_eq!(SCHEMA_VERSION, 4);
    }
    assert_eq!(all(&store), before, "old rows read as they were stored");
    let new = store.insert(run(6)).await.unwrap();
    assert_eq!(new.id, 6);
    let after = all(&store);
    assert_eq!(&after[1..], &before[..]);
    // The new run reads as the plain encoding of the same run would.
    let v: serde_json::Value = serde_json::from_slice(&after[0]).unwrap();
    assert_eq!(
        (v["id"].as_u64(), v["run_id"].as_str()),
        (Some(6), Some("6"))
    );
    assert_eq!(v["received_at"], new.received_at.as_str());
    let stored = store.run(&job_key("o", "r", "w", "j"), 6).unwrap().unwrap();
    assert_eq!(stored, after[0]);
    store.close().await;
    drop(store);
    assert_eq!(
        formats(&path),
        vec![FORMAT_ZSTD, b'{', b'{', b'{', b'{', b'{']
    );
}

#[tokio::test]
async fn packed_and_plain_runs_read_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut answers = Vec::new();
    let mut stored_formats = Vec::new();
    for (i, (c, in_writer)) in [
        (Compression::Off, false),
        (Compression::Zstd, false),
        (Compression::ZstdDict, false),
        (Compression::ZstdDict, true),
    ]
    .into_iter()
    .enumerate()
    {
        // The same runs received at the same instant, so only the format differs.
        let options = StoreOptions {
            clock: || std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_770_388_223_056),
            compress_in_writer: in_writer,
            ..options(c)
        };
        let path = dir.path().join(format!("{i}.redb"));
        let store = Store::open(&path, options, Arc::default()).unwrap();
        for n in 1..=3 {
            store.insert(run(n)).await.unwrap();
            store.insert(rich(n)).await.unwrap();
        }
        answers.push(all(&store));
        store.close().await;
        drop(store);
        stored_formats.push(formats(&path));
    }
    for a in &answers[1..] {
        assert_eq!(&answers[0], a);
    }
    assert!(
        answers[0]
            .iter()
            .any(|r| r.windows(7).any(|w| w == b"hdr_v2\""))
    );
    // Plain; then the rich runs split (format 2), the others as text (format 1).
    assert_eq!(stored_formats[0], vec![b'{'; 6]);
    let packed = [FORMAT_SPLIT, FORMAT_ZSTD].repeat(3);
    for f in &stored_formats[1..] {
        assert_eq!(f, &packed);
    }
}

#[tokio::test]
async fn a_corrupt_packed_row_is_an_error_naming_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.redb");
    let store = Store::open(&path, StoreOptions::default(), Arc::default()).unwrap();
    store.insert(run(1)).await.unwrap();
    store.insert(run(2)).await.unwrap();
    store.close().await;
    drop(store);
    {
        let db = Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut runs = txn.open_table(RUNS).unwrap();
            let key = run_key(&job_key("o", "r", "w", "j"), 2);
            let mut value = runs.get(key.as_slice()).unwrap().unwrap().value().to_vec();
            let last = value.len() - 2;
            value[last] ^= 0x5a;
            runs.insert(key.as_slice(), value.as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    let store = Store::open(&path, StoreOptions::default(), Arc::default()).unwrap();
    let key = job_key("o", "r", "w", "j");
    let err = store.query(&key, 10, None).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { id: 2, .. }), "{err}");
    assert!(err.to_string().starts_with("stored run 2: "), "{err}");
    assert!(matches!(
        store.run(&key, 2),
        Err(StoreError::Corrupt { id: 2, .. })
    ));
    // The other run still reads.
    assert!(store.run(&key, 1).unwrap().is_some());
    store.close().await;
}
