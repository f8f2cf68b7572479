//! The store's reads (the job list, a job, its history, one run) and the sizer's write, over
//! the current database: each an I/O-checked transaction, or a message to the writer.

use redb::ReadTransaction;
use summary::fleet::{JobAggregate, RunRow};

use super::StoreError;
use super::jobs::{aggregate, aggregates, history};
use super::schema::{RUNS, run_key};
use super::writer::WriteOp;

impl super::RedbStore {
    /// Runs `read` in a read transaction of the current database (an I/O error makes the
    /// store unavailable, as for every read). Blocking.
    fn read<T>(
        &self,
        read: impl FnOnce(&ReadTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let opened = self.db.current()?;
        let result = opened
            .db
            .begin_read()
            .map_err(StoreError::from)
            .and_then(|txn| read(&txn));
        self.check_io(opened.generation, result)
    }

    /// Every job's aggregate. Blocking.
    pub fn jobs(&self) -> Result<Vec<JobAggregate>, StoreError> {
        self.read(aggregates)
    }

    /// One job's aggregate. Blocking.
    pub fn job(&self, job_key: &[u8]) -> Result<Option<JobAggregate>, StoreError> {
        self.read(|txn| aggregate(txn, job_key))
    }

    /// One job's rows, newest first (see `history` in this file). Blocking.
    pub fn history(
        &self,
        job_key: &[u8],
        limit: usize,
        before_id: Option<u64>,
    ) -> Result<(Vec<RunRow>, Option<u64>), StoreError> {
        self.read(|txn| history(txn, job_key, limit, before_id))
    }

    /// One stored run of a job, as the query returns it. Blocking.
    pub fn run(&self, job_key: &[u8], id: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(RUNS)?;
            let Some(v) = table.get(run_key(job_key, id).as_slice())? else {
                return Ok(None);
            };
            let json = crate::store::codec::stored_json(id, v.value())
                .map_err(|source| StoreError::Corrupt { id, source })?;
            Ok(Some(json.into_owned()))
        })
    }

    /// Stores the background sizer's answer for a job; whether it replaced an older one.
    pub async fn set_sizing(
        &self,
        job_key: Vec<u8>,
        sizing: summary::fleet::SizingShort,
    ) -> Result<bool, StoreError> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.sender()?
            .send(WriteOp::SetSizing {
                job_key,
                sizing,
                reply,
            })
            .await
            .map_err(|_| StoreError::Closed)?;
        match rx.await {
            Ok(result) => result.map(|n| n > 0),
            Err(_) => Err(StoreError::Closed),
        }
    }
}
