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

/// Answers a job's caller once the commit's fate is known.
type Finish = Box<dyn FnOnce(Result<(), String>) + Send>;

/// One caller's write.
trait WriteJob: Send {
    /// Runs the write (in a savepoint) and returns what answers the caller after commit.
    fn run(self: Box<Self>, conn: &mut DbConnection) -> Finish;
    /// Answers the caller that the write could not run.
    fn fail(self: Box<Self>, message: String);
}

type Job = Box<dyn WriteJob>;

struct TypedJob<T, F> {
    write: F,
    done: oneshot::Sender<Result<T, StorageError>>,
}

impl<T, F> WriteJob for TypedJob<T, F>
where
    T: Send + 'static,
    F: FnOnce(&mut DbConnection) -> Result<T, StorageError> + Send + 'static,
{
    fn run(self: Box<Self>, conn: &mut DbConnection) -> Finish {
        let TypedJob { write, done } = *self;
        // A savepoint: a failing job undoes only its own changes.
        let result = conn.transaction(write);
        Box::new(move |committed: Result<(), String>| {
            let _ = done.send(match (result, committed) {
                (Ok(value), Ok(())) => Ok(value),
                (Err(err), _) => Err(err),
                (Ok(_), Err(err)) => Err(StorageError::CommitFailed(err)),
            });
        })
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
    /// The returned future does not borrow `self`.
    pub fn write<T, F>(
        &self,
        f: F,
    ) -> impl std::future::Future<Output = Result<T, StorageError>> + 'static
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection) -> Result<T, StorageError> + Send + 'static,
    {
        let (done, answer) = oneshot::channel();
        let job: Job = Box::new(TypedJob { write: f, done });
        let queued = self.jobs.send(job).map_err(|_| StorageError::Cancelled);
        async move {
            queued?;
            answer.await.map_err(|_| StorageError::Cancelled)?
        }
    }
}

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
        let c = match conn.take() {
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
        let mut c = c;
        if let Err(err) = begin_write(&mut c) {
            let message = err.to_string();
            tracing::warn!(error = %message, "The writer cannot begin a transaction.");
            for job in group {
                job.fail(message.clone());
            }
            // Drop the connection: it may be broken; the next group gets a fresh one.
            continue;
        }
        let finishers: Vec<Finish> = group.into_iter().map(|job| job.run(&mut c)).collect();
        let committed = commit(&mut c).map_err(|e| {
            rollback(&mut c);
            e.to_string()
        });
        if let Err(err) = &committed {
            tracing::warn!(error = %err, "A group commit failed.");
        } else {
            conn = Some(c);
        }
        for finish in finishers {
            finish(committed.clone());
        }
    }
}
