//! `StoreWriter`: the engine's one writer to the database, with group commit.
//!
//! Every engine write (dispatch marks, send results, webhook updates, cancels) is a job sent
//! to one dedicated thread. The thread takes every job waiting, runs each in its own
//! savepoint inside one write transaction, commits once, and only then answers each job's
//! caller: an answer means the change is durable. Under load many jobs share a commit (a
//! message never costs its own transaction); a failing job rolls back only its savepoint.
//!
//! One writer also means no two engine writes contend for SQLite's lock; other processes
//! (CLI commands) wait under `busy_timeout`.

use std::sync::mpsc;
use std::time::Duration;

use diesel::Connection;
use tokio::sync::oneshot;

use crate::storage::{begin_write, commit, rollback, Db, DbConnection, StorageError};

/// Jobs committed together at most.
const MAX_GROUP: usize = 512;

/// One caller's write.
trait WriteJob: Send {
    /// Runs the write in a savepoint and keeps its result; true when the database undid it
    /// for a conflict with another transaction (a deadlock, a serialization failure).
    fn run(&mut self, conn: &mut DbConnection) -> bool;
    /// Answers the caller once the fate of the transaction that ran it last is known.
    fn finish(self: Box<Self>, committed: Result<(), String>);
    /// Answers the caller that the write could not run.
    fn fail(self: Box<Self>, message: String);
}

type Job = Box<dyn WriteJob>;

struct TypedJob<T, F> {
    write: F,
    result: Option<Result<T, StorageError>>,
    done: oneshot::Sender<Result<T, StorageError>>,
}

impl<T, F> WriteJob for TypedJob<T, F>
where
    T: Send + 'static,
    F: FnMut(&mut DbConnection) -> Result<T, StorageError> + Send + 'static,
{
    fn run(&mut self, conn: &mut DbConnection) -> bool {
        // A savepoint: a failing job undoes only its own changes.
        let result = conn.transaction(|conn| (self.write)(conn));
        let conflict = matches!(&result, Err(err) if err.is_conflict());
        self.result = Some(result);
        conflict
    }

    fn finish(self: Box<Self>, committed: Result<(), String>) {
        let TypedJob { result, done, .. } = *self;
        let _ = done.send(match (result, committed) {
            (None, _) => Err(StorageError::Cancelled),
            (Some(Err(err)), _) => Err(err),
            (Some(Ok(value)), Ok(())) => Ok(value),
            (Some(Ok(_)), Err(err)) => Err(StorageError::CommitFailed(err)),
        });
    }

    fn fail(self: Box<Self>, message: String) {
        let _ = self.done.send(Err(StorageError::CommitFailed(message)));
    }
}

/// A handle to the writer thread; cheap to clone. The thread ends when every handle is gone.
#[derive(Clone)]
pub struct StoreWriter {
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for StoreWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreWriter")
    }
}

impl StoreWriter {
    /// Starts the writer thread on `db`.
    pub fn start(db: Db) -> StoreWriter {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("mindo-writer".into())
            .spawn(move || run(db, queue))
            .map(|_| ())
            .unwrap_or_else(|e| tracing::error!(error = %e, "Cannot start the writer thread."));
        StoreWriter { jobs }
    }

    /// Runs `f` inside the next group commit and answers once that commit is durable.
    /// `f` may run more than once (see [`run`]); only the run that is committed counts.
    /// The returned future does not borrow `self`.
    pub fn write<T, F>(
        &self,
        f: F,
    ) -> impl std::future::Future<Output = Result<T, StorageError>> + 'static
    where
        T: Send + 'static,
        F: FnMut(&mut DbConnection) -> Result<T, StorageError> + Send + 'static,
    {
        let (done, answer) = oneshot::channel();
        let job: Job = Box::new(TypedJob {
            write: f,
            result: None,
            done,
        });
        let queued = self.jobs.send(job).map_err(|_| StorageError::Cancelled);
        async move {
            queued?;
            answer.await.map_err(|_| StorageError::Cancelled)?
        }
    }
}

/// Takes groups of jobs off the queue and commits each group once. A group in which a job
/// meets a conflict with another transaction (on PostgreSQL, another daemon's writer) is
/// rolled back whole and its jobs are run again one transaction each: rolling back the
/// job's savepoint alone would keep the locks the group's earlier jobs took, and two
/// writers holding each other's rows through hundreds of jobs meet deadlock after deadlock
/// (each found only after PostgreSQL's `deadlock_timeout`).
fn run(db: Db, queue: mpsc::Receiver<Job>) {
    let mut conn = None;
    while let Ok(first) = queue.recv() {
        let mut group = Vec::with_capacity(16);
        group.push(first);
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let mut c = match conn.take() {
            Some(c) => c,
            None => match db.get() {
                Ok(c) => c,
                Err(err) => {
                    let message = err.to_string();
                    tracing::warn!(error = %message, "The writer cannot reach the database.");
                    for job in group {
                        job.fail(message.clone());
                    }
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            },
        };
        match commit_group(&mut c, &mut group, true) {
            Group::Done(committed) => {
                if committed.is_ok() {
                    conn = Some(c);
                }
                for job in group {
                    job.finish(committed.clone());
                }
            }
            Group::Conflict => {
                // Every lock of the group is released: the other writer goes on, and each
                // job now holds its rows only as long as it runs.
                tracing::debug!(
                    jobs = group.len(),
                    "A group write met a conflict; its jobs run one by one."
                );
                let mut broken = None;
                for mut job in group {
                    match &broken {
                        None => match run_alone(&mut c, &mut job) {
                            Ok(committed) => job.finish(committed),
                            Err(message) => {
                                job.fail(message.clone());
                                broken = Some(message);
                            }
                        },
                        Some(message) => job.fail(message.clone()),
                    }
                }
                if broken.is_none() {
                    conn = Some(c);
                }
            }
            Group::Unavailable(message) => {
                // Drop the connection: it may be broken; the next group gets a fresh one.
                for job in group {
                    job.fail(message.clone());
                }
            }
        }
    }
}

/// How a group's transaction ended.
enum Group {
    /// Committed (or the commit failed): every job has run once.
    Done(Result<(), String>),
    /// Rolled back whole: a job met a conflict and `stop_at_conflict` was set.
    Conflict,
    /// No transaction could be begun.
    Unavailable(String),
}

/// Runs `jobs` in one transaction, each in its savepoint. With `stop_at_conflict`, a job's
/// conflict rolls the whole transaction back; without, it is that job's answer.
fn commit_group(c: &mut DbConnection, jobs: &mut [Job], stop_at_conflict: bool) -> Group {
    if let Err(err) = begin_write(c) {
        let message = err.to_string();
        tracing::warn!(error = %message, "The writer cannot begin a transaction.");
        return Group::Unavailable(message);
    }
    for job in jobs.iter_mut() {
        if job.run(c) && stop_at_conflict {
            rollback(c);
            return Group::Conflict;
        }
    }
    let committed = commit(c).map_err(|e| {
        rollback(c);
        e.to_string()
    });
    if let Err(err) = &committed {
        tracing::warn!(error = %err, "A group commit failed.");
    }
    Group::Done(committed)
}

/// Times a job alone in its transaction meets a conflict before that is its answer.
const ALONE_ATTEMPTS: u32 = 3;

/// Runs one job in a transaction of its own, again after a conflict (up to
/// [`ALONE_ATTEMPTS`] times; a conflict that persists is then the job's answer). The outer
/// `Err` is a connection that could not begin a transaction.
fn run_alone(c: &mut DbConnection, job: &mut Job) -> Result<Result<(), String>, String> {
    let mut attempt = 1;
    loop {
        let last = attempt >= ALONE_ATTEMPTS;
        match commit_group(c, std::slice::from_mut(job), !last) {
            Group::Done(committed) => return Ok(committed),
            Group::Unavailable(message) => return Err(message),
            // The other transaction has likely ended by the time this one begins again.
            Group::Conflict => std::thread::sleep(Duration::from_millis(5 * u64::from(attempt))),
        }
        attempt += 1;
    }
}
