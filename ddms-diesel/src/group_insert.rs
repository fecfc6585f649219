//! Group insert: concurrent single-record creates of one tenant, actor and entity-type
//! version share one `INSERT` statement and so one commit.
//!
//! A tenant's writers queue for its feed until commit (gap-free order, see
//! ARCHITECTURE.md), so single creates of one tenant are serial, each paying a WAL
//! flush. Instead, the first create to arrive becomes the *leader*: it takes every
//! create queued behind it (up to [`MAX_GROUP`]), inserts them in one statement, hands
//! each caller its record, and passes the lead to the next waiting caller, if any. With
//! one writer nothing waits and the group is that one record; under load the groups
//! grow by themselves. If a group fails (a unique value taken, say), each of its records
//! is inserted alone, so every caller gets exactly its own outcome. `create_many` calls
//! are never grouped: they are all or nothing on their own.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;

use ddms_core::{Data, Error, Record, Result};
use parking_lot::Mutex;
use uuid::Uuid;

/// Most records one grouped statement inserts.
pub(crate) const MAX_GROUP: usize = 256;

/// Who may share a statement: same tenant, same actor (`created_by`, the events'
/// actor), same entity type version (validated against it).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct GroupKey {
    pub tenant: Uuid,
    pub actor: String,
    pub type_id: Uuid,
    pub type_version: i64,
}

enum Reply {
    /// The caller's outcome.
    Done(Result<Record>),
    /// The caller leads the next group.
    Lead,
}

struct Waiting {
    data: Data,
    reply: SyncSender<Reply>,
}

#[derive(Default)]
struct Queue {
    leading: bool,
    waiting: Vec<Waiting>,
}

/// How grouping went so far (see [`crate::PgBackend::group_insert_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupInsertStats {
    /// Groups of two or more records inserted by one statement.
    pub groups: u64,
    /// Records inserted in those groups.
    pub grouped_records: u64,
    /// Groups that failed and were retried one record at a time.
    pub split_groups: u64,
}

/// The queues of the groups being formed, by key.
#[derive(Default)]
pub(crate) struct GroupInsert {
    queues: Mutex<HashMap<GroupKey, Arc<Mutex<Queue>>>>,
    groups: AtomicU64,
    grouped_records: AtomicU64,
    split_groups: AtomicU64,
}

impl GroupInsert {
    pub(crate) fn stats(&self) -> GroupInsertStats {
        GroupInsertStats {
            groups: self.groups.load(Ordering::Relaxed),
            grouped_records: self.grouped_records.load(Ordering::Relaxed),
            split_groups: self.split_groups.load(Ordering::Relaxed),
        }
    }

    fn queue(&self, key: &GroupKey) -> Arc<Mutex<Queue>> {
        let mut g = self.queues.lock();
        if g.len() > 10_000 {
            g.retain(|_, q| {
                let q = q.lock();
                q.leading || !q.waiting.is_empty()
            });
        }
        g.entry(key.clone()).or_default().clone()
    }

    /// Inserts one record, possibly together with concurrent ones of the same key.
    /// `many` inserts a group in one statement (records in input order); `one`
    /// inserts a single record on its own.
    pub(crate) fn insert(
        &self,
        key: &GroupKey,
        data: Data,
        many: &dyn Fn(&[Data]) -> Result<Vec<Record>>,
        one: &dyn Fn(&Data) -> Result<Record>,
    ) -> Result<Record> {
        let queue = self.queue(key);
        let (tx, rx): (SyncSender<Reply>, Receiver<Reply>) = sync_channel(1);
        let lead = {
            let mut q = queue.lock();
            q.waiting.push(Waiting { data, reply: tx });
            !std::mem::replace(&mut q.leading, true)
        };
        if !lead {
            match rx.recv() {
                Ok(Reply::Done(r)) => return r,
                Ok(Reply::Lead) => {}
                Err(_) => return Err(Error::Internal("group insert leader vanished".into())),
            }
        }
        // Leading: insert everything queued so far (our own record included).
        let group: Vec<Waiting> = {
            let mut q = queue.lock();
            let n = q.waiting.len().min(MAX_GROUP);
            q.waiting.drain(..n).collect()
        };
        let (datas, replies): (Vec<Data>, Vec<SyncSender<Reply>>) =
            group.into_iter().map(|w| (w.data, w.reply)).unzip();
        let n = datas.len();
        // A panic must not leave the queue without a leader: everyone gets an error.
        let outcomes: Vec<Result<Record>> =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                if n == 1 {
                    vec![one(&datas[0])]
                } else {
                    self.groups.fetch_add(1, Ordering::Relaxed);
                    self.grouped_records.fetch_add(n as u64, Ordering::Relaxed);
                    match many(&datas) {
                        Ok(records) if records.len() == n => records.into_iter().map(Ok).collect(),
                        // Someone's record failed the group: each on its own, for its
                        // own outcome.
                        _ => {
                            self.split_groups.fetch_add(1, Ordering::Relaxed);
                            datas.iter().map(one).collect()
                        }
                    }
                }
            }))
            .unwrap_or_else(|_| {
                (0..n)
                    .map(|_| Err(Error::Internal("group insert failed".into())))
                    .collect()
            });
        for (reply, outcome) in replies.into_iter().zip(outcomes) {
            // Capacity 1 and one message per caller: never blocks. A caller that gave
            // up (its thread ended) just drops its outcome.
            let _ = reply.try_send(Reply::Done(outcome));
        }
        // Pass the lead on, or stop leading.
        {
            let mut q = queue.lock();
            loop {
                match q.waiting.first() {
                    Some(next) => {
                        if next.reply.try_send(Reply::Lead).is_ok() {
                            break;
                        }
                        // That caller is gone: drop its record and try the next one.
                        q.waiting.remove(0);
                    }
                    None => {
                        q.leading = false;
                        break;
                    }
                }
            }
        }
        match rx.recv() {
            Ok(Reply::Done(r)) => r,
            _ => Err(Error::Internal("group insert lost its own outcome".into())),
        }
    }
}
