//! Test support, for this crate's tests and other crates': stores (SQLite in a fresh
//! temporary directory, PostgreSQL in a fresh namespace of the database named by
//! `TEST_DATABASE_URL`), a [`harness`] that starts the whole system on `127.0.0.1:0`, and a
//! [`forwarder`] a test controls on a hop (pass, blackhole, refuse).
//!
//! Without `TEST_DATABASE_URL`, [`postgres`] prints why the test is skipped and returns
//! `None`; under `CI=true` it panics instead, so CI can never silently skip PostgreSQL.

pub mod forwarder;
pub mod harness;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use evidence::store::StoreUrl;

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A directory removed when dropped.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "rig-test-{label}-{}-{}-{n}",
            std::process::id(),
            evidence::time::now_us()
        ));
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Where a test's stores live; keeps the temporary directory alive.
#[derive(Debug)]
pub struct TestStores {
    pub url: StoreUrl,
    pub backend: &'static str,
    _dir: Option<TempDir>,
}

/// SQLite stores in a fresh temporary directory.
pub fn sqlite(label: &str) -> TestStores {
    let dir = TempDir::new(label);
    TestStores {
        url: StoreUrl::Sqlite {
            dir: dir.path().join("stores"),
        },
        backend: "sqlite",
        _dir: Some(dir),
    }
}

/// PostgreSQL stores in a fresh namespace, or `None` (with the reason printed) when
/// `TEST_DATABASE_URL` is not set. Panics under `CI=true` when it is not set.
pub fn postgres(label: &str) -> Option<TestStores> {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let namespace = format!(
                "t_{}_{}_{:x}_{n}",
                sanitize(label),
                std::process::id(),
                evidence::time::now_us() & 0xff_ffff
            );
            let store = StoreUrl::parse(&url)
                .unwrap_or_else(|err| panic!("TEST_DATABASE_URL is not usable: {err}"))
                .with_namespace(&namespace);
            Some(TestStores {
                url: store,
                backend: "postgres",
                _dir: None,
            })
        }
        _ => {
            if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
                panic!("CI=true but TEST_DATABASE_URL is not set: PostgreSQL tests must run in CI");
            }
            eprintln!(
                "skipping PostgreSQL test {label}: TEST_DATABASE_URL is not set \
                 (e.g. postgres://postgres@127.0.0.1:5432/rig_test)"
            );
            None
        }
    }
}

fn sanitize(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(24)
        .collect()
}
