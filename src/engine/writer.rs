//! `StoreWriter`: the engine's one writer to the database, with group commit.
//!
//! Every engine write (dispatch marks, send results, webhook updates, cancels) is a job sent
//! to one dedicated thread. The thread takes every job waiting, runs them one after another
//! inside one write transaction, commits once, and only then answers each job's caller: an
//! answer means the change is durable. Under load many jobs share a commit (a message never
//! costs its own transaction).
//!
//! Jobs share the transaction without a savepoint each: on PostgreSQL a savepoint and its
//! release are two more round trips per job, as many as a dispatch mark's own statements.
//! A job that fails therefore undoes the whole group, whose jobs then run again one
//! transaction each, so that a failing job changes nothing and answers its own error, and
//! every other job is committed. Jobs fail rarely (a lost connection, a conflict with another
//! daemon's writer), so the group is the common path.
//!
//! One writer also means no two engine writes contend for SQLite's lock; other processes
//! (CLI commands) wait under `busy_timeout`.

use std::sync::mpsc;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::storage::{begin_write, commit, rollback, Db, DbConnection, StorageError};

/// Jobs committed together at most.
const MAX_GROUP: usize = 512;

/// How a job's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ran {
    Ok,
    /// The job answered an error: its transaction must be rolled back. `conflict` when the
    /// database undid it for a conflict with another transaction (a deadlock, a
    /// serialization failure), which may pass if the job runs again.
    Failed {
        conflict: bool,
    },
}

/// One caller's write.
trait WriteJob: Send {
    /// Runs the write in the open transaction and keeps its result.
    fn run(&mut self, conn: &mut DbConnection) -> Ran;
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
    fn run(&mut self, conn: &mut DbConnection) -> Ran {
        let result = (self.write)(conn);
        let ran = match &result {
            Ok(_) => Ran::Ok,
            Err(err) => Ran::Failed {
                conflict: err.is_conflict(),
            },
        };
        self.result = Some(result);
        ran
    }

    /// A job that failed answers its own error whatever `committed` says (its transaction
    /// was rolled back).
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
/// fails is rolled back whole and its jobs are run again one transaction each (see the
/// module's comment). That also releases every lock the group took when the failure is a
/// conflict with another daemon's writer: two writers holding each other's rows through
/// hundreds of jobs would meet deadlock after deadlock (each found only after PostgreSQL's
/// `deadlock_timeout`).
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
        let alone = group.len() == 1;
        match commit_group(&mut c, &mut group) {
            Group::Done(committed) => {
                if committed.is_ok() {
                    conn = Some(c);
                }
                for job in group {
                    job.finish(committed.clone());
                }
            }
            Group::Undone { .. } if !alone => {
                tracing::debug!(
                    jobs = group.len(),
                    "A job of a group write failed; the group's jobs run one by one."
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
            Group::Undone { conflict } => {
                // One job alone, run once already: its error is its answer, unless it was a
                // conflict, which may pass on a second attempt.
                if let Some(mut job) = group.pop() {
                    let answer = match conflict {
                        false => Ok(Ok(())),
                        true => run_alone_from(&mut c, &mut job, 2),
                    };
                    match answer {
                        Ok(committed) => {
                            conn = Some(c);
                            job.finish(committed);
                        }
                        Err(message) => job.fail(message),
                    }
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
    /// Every job ran; the commit's result.
    Done(Result<(), String>),
    /// A job failed and the transaction was rolled back whole; `conflict` when that job
    /// met a conflict with another transaction.
    Undone { conflict: bool },
    /// No transaction could be begun.
    Unavailable(String),
}

/// Runs `jobs` in one transaction and commits it, or rolls it back at the first job that
/// fails.
fn commit_group(c: &mut DbConnection, jobs: &mut [Job]) -> Group {
    if let Err(err) = begin_write(c) {
        let message = err.to_string();
        tracing::warn!(error = %message, "The writer cannot begin a transaction.");
        return Group::Unavailable(message);
    }
    for job in jobs.iter_mut() {
        if let Ran::Failed { conflict } = job.run(c) {
            rollback(c);
            return Group::Undone { conflict };
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

/// Runs one job in a transaction of its own (see [`run_alone_from`]).
fn run_alone(c: &mut DbConnection, job: &mut Job) -> Result<Result<(), String>, String> {
    run_alone_from(c, job, 1)
}

/// Runs one job in a transaction of its own, from attempt `attempt`: again after a conflict,
/// up to [`ALONE_ATTEMPTS`] attempts in all; a conflict that persists, or any other error,
/// is then the job's answer (its transaction rolled back). The outer `Err` is a connection
/// that could not begin a transaction.
fn run_alone_from(
    c: &mut DbConnection,
    job: &mut Job,
    mut attempt: u32,
) -> Result<Result<(), String>, String> {
    loop {
        match commit_group(c, std::slice::from_mut(job)) {
            Group::Done(committed) => return Ok(committed),
            Group::Unavailable(message) => return Err(message),
            Group::Undone { conflict } => {
                if !conflict || attempt >= ALONE_ATTEMPTS {
                    // The job answers its own error; nothing of it was committed.
                    return Ok(Ok(()));
                }
                // The other transaction has likely ended by the time this one begins again.
                std::thread::sleep(Duration::from_millis(5 * u64::from(attempt)));
            }
        }
        attempt += 1;
    }
}
