//! Background maintenance threads (the field indexer, event retention): run a job every
//! interval until the handle is stopped or dropped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A running background job. Dropping it asks the thread to stop; [`Periodic::stop`]
/// also waits for it.
#[derive(Debug)]
pub struct Periodic {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Periodic {
    /// Runs `job` now and then every `interval` on a thread called `name`.
    pub fn spawn(
        name: &str,
        interval: Duration,
        mut job: impl FnMut() + Send + 'static,
    ) -> Periodic {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                while !flag.load(Ordering::SeqCst) {
                    job();
                    std::thread::park_timeout(interval);
                }
            })
            .ok();
        Periodic { stop, thread }
    }

    /// Stops the thread (after its current run) and waits for it.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

impl Drop for Periodic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = &self.thread {
            t.thread().unpark();
        }
    }
}
