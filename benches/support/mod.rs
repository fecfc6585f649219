//! Shared bench setup: `DATABASE_URL`, or a throwaway persistent cluster (durable
//! settings, unlike the test harness's `fsync=off` clusters) removed afterwards.

use std::path::PathBuf;

use ddms_diesel::embedded::{locate, Located};

/// A database for one bench run.
pub struct BenchDb {
    pub url: String,
    located: Option<Located>,
    dir: Option<PathBuf>,
}

impl Drop for BenchDb {
    fn drop(&mut self) {
        if let Some(mut c) = self.located.take().and_then(|l| l.cluster) {
            let _ = c.stop();
        }
        if let Some(d) = &self.dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// `DATABASE_URL` when set (and not empty), else a fresh cluster named after `bench`.
pub fn database(bench: &str) -> BenchDb {
    let url = std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty());
    let dir = std::env::temp_dir().join(format!("ddms-bench-{bench}-{}", std::process::id()));
    let located = locate(url.as_deref(), &dir).expect("start PostgreSQL");
    BenchDb {
        url: located.url.clone(),
        dir: located.cluster.is_some().then_some(dir),
        located: Some(located),
    }
}
