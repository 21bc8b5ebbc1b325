//! Sorted row streams and their merge by order id.
//!
//! Each stream is one query `ORDER BY order_id` run on its own task, which decodes rows and
//! hands them over in chunks through a bounded channel: memory stays bounded whatever the
//! size of the run, and decoding runs beside the merge. Keys are compared byte-wise (Rust's
//! `str` order), so PostgreSQL queries sort with `COLLATE "C"`; a stream that yields a key
//! out of order is an error, never a silent mis-join.

use std::collections::VecDeque;

use futures_util::TryStreamExt;
use sqlx::AnyPool;
use sqlx::any::AnyRow;
use tokio::sync::mpsc;

use crate::VerifyError;
use crate::model::StoreTag;
use crate::rows::{CHUNK, FromColumns, copy_chunks};

/// A row with an order id to merge on.
pub trait Keyed {
    fn key(&self) -> &str;
}

/// A stream of rows sorted by key.
#[derive(Debug)]
pub struct Sorted<T> {
    name: &'static str,
    rx: mpsc::Receiver<Result<Vec<T>, String>>,
    buffer: VecDeque<T>,
    done: bool,
    last_key: Option<String>,
}

impl<T: Keyed + Send + 'static> Sorted<T> {
    /// Runs `sql` on `pool` in the background, decoding each row with `decode`.
    pub fn spawn(
        name: &'static str,
        pool: AnyPool,
        sql: String,
        decode: impl Fn(&AnyRow) -> Result<T, sqlx::Error> + Send + Sync + 'static,
    ) -> Self {
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            let result: Result<(), sqlx::Error> = async {
                let mut rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch(&pool);
                let mut chunk = Vec::with_capacity(CHUNK);
                while let Some(row) = rows.try_next().await? {
                    chunk.push(decode(&row)?);
                    if chunk.len() == CHUNK {
                        let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
                        if tx.send(Ok(full)).await.is_err() {
                            return Ok(());
                        }
                    }
                }
                if !chunk.is_empty() {
                    let _ = tx.send(Ok(chunk)).await;
                }
                Ok(())
            }
            .await;
            if let Err(err) = result {
                let _ = tx.send(Err(err.to_string())).await;
            }
        });
        Self::from_receiver(name, rx)
    }

    /// Reads in pages: `page_sql` returns one row whose first column is a JSON array of at
    /// most `page_rows` items with keys greater than `$1` (`''` at first), in key order;
    /// `decode` turns it into rows. One row per page instead of one per item keeps the
    /// database driver's per-row cost out of the verifier's time. A full page may end inside
    /// one key's rows, so its last key is read again with the next page (a key with more rows
    /// than a page is taken as it comes).
    pub fn spawn_pages(
        name: &'static str,
        pool: AnyPool,
        page_sql: String,
        page_rows: usize,
        decode: impl Fn(&str) -> Result<Vec<T>, String> + Send + Sync + 'static,
    ) -> Self {
        let (tx, rx) = mpsc::channel(2);
        tokio::spawn(async move {
            let mut after = String::new();
            loop {
                let page: Result<Option<String>, String> =
                    sqlx::query(sqlx::AssertSqlSafe(page_sql.clone()))
                        .bind(&after)
                        .fetch_one(&pool)
                        .await
                        .and_then(|row| sqlx::Row::try_get::<Option<String>, _>(&row, 0))
                        .map_err(|e| e.to_string());
                let mut items = match page.and_then(|text| match text {
                    None => Ok(Vec::new()),
                    Some(text) => decode(&text),
                }) {
                    Ok(items) => items,
                    Err(reason) => {
                        let _ = tx.send(Err(reason)).await;
                        return;
                    }
                };
                let full = items.len() >= page_rows;
                if full {
                    // The last key may continue on the next page: leave it for that page.
                    let last = items
                        .last()
                        .map(|i| i.key().to_string())
                        .unwrap_or_default();
                    let keep = items
                        .iter()
                        .rposition(|i| i.key() != last)
                        .map_or(items.len(), |i| i + 1);
                    items.truncate(keep);
                }
                let Some(last) = items.last() else {
                    return;
                };
                after = last.key().to_string();
                if tx.send(Ok(items)).await.is_err() || !full {
                    return;
                }
            }
        });
        Self::from_receiver(name, rx)
    }

    /// Streams `sql` (its select list [`FromColumns::COLUMNS`], in key order) from
    /// PostgreSQL with `COPY (sql) TO STDOUT` on a connection of its own, decoding each
    /// line as a row from `store`.
    pub fn spawn_copy(
        name: &'static str,
        target: target_system::store::PgTarget,
        sql: String,
        store: StoreTag,
    ) -> Self
    where
        T: FromColumns,
    {
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            let sent = copy_chunks(&target, &sql, store, |chunk| {
                let tx = tx.clone();
                async move { tx.send(Ok(chunk)).await.is_ok() }
            })
            .await;
            if let Err(reason) = sent {
                let _ = tx.send(Err(reason)).await;
            }
        });
        Self::from_receiver(name, rx)
    }

    /// An empty stream (for evidence that is not there, e.g. no client history).
    pub fn empty(name: &'static str) -> Self {
        let (_tx, rx) = mpsc::channel(1);
        Self {
            name,
            rx,
            buffer: VecDeque::new(),
            done: true,
            last_key: None,
        }
    }

    fn from_receiver(name: &'static str, rx: mpsc::Receiver<Result<Vec<T>, String>>) -> Self {
        Self {
            name,
            rx,
            buffer: VecDeque::new(),
            done: false,
            last_key: None,
        }
    }

    async fn fill(&mut self) -> Result<(), VerifyError> {
        while self.buffer.is_empty() && !self.done {
            match self.rx.recv().await {
                Some(Ok(chunk)) => {
                    for row in &chunk {
                        if let Some(last) = &self.last_key
                            && row.key() < last.as_str()
                        {
                            return Err(VerifyError::OutOfOrder {
                                stream: self.name,
                                key: row.key().to_string(),
                                after: last.clone(),
                            });
                        }
                        self.last_key = Some(row.key().to_string());
                    }
                    self.buffer.extend(chunk);
                }
                Some(Err(reason)) => {
                    return Err(VerifyError::Read {
                        what: self.name,
                        reason,
                    });
                }
                None => self.done = true,
            }
        }
        Ok(())
    }

    /// The next key, if any rows remain.
    pub async fn peek(&mut self) -> Result<Option<&str>, VerifyError> {
        self.fill().await?;
        Ok(self.buffer.front().map(Keyed::key))
    }

    /// Makes the next row (if any) available to [`Sorted::front_key`].
    pub async fn ready(&mut self) -> Result<(), VerifyError> {
        self.fill().await
    }

    /// The next key after [`Sorted::ready`], without waiting.
    pub fn front_key(&self) -> Option<&str> {
        self.buffer.front().map(Keyed::key)
    }

    /// Moves every row with `key` into `out`.
    pub async fn take(&mut self, key: &str, out: &mut Vec<T>) -> Result<(), VerifyError> {
        loop {
            self.fill().await?;
            match self.buffer.front() {
                Some(row) if row.key() == key => {
                    if let Some(row) = self.buffer.pop_front() {
                        out.push(row);
                    }
                }
                _ => return Ok(()),
            }
        }
    }
}

/// The smallest of some keys.
pub fn min_key<'a>(keys: impl IntoIterator<Item = Option<&'a str>>) -> Option<String> {
    keys.into_iter().flatten().min().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Row(String, i64);

    impl Keyed for Row {
        fn key(&self) -> &str {
            &self.0
        }
    }

    fn stream(rows: Vec<Vec<(&str, i64)>>) -> Sorted<Row> {
        let (tx, rx) = mpsc::channel(rows.len().max(1));
        for chunk in rows {
            tx.try_send(Ok(chunk
                .into_iter()
                .map(|(k, v)| Row(k.into(), v))
                .collect()))
                .unwrap();
        }
        Sorted::from_receiver("test", rx)
    }

    /// Rows with one key are taken together, across chunk boundaries.
    #[tokio::test]
    async fn takes_runs_of_one_key_across_chunks() {
        let mut s = stream(vec![vec![("a", 1), ("b", 2)], vec![("b", 3), ("c", 4)]]);
        assert_eq!(s.peek().await.unwrap(), Some("a"));
        let mut out = Vec::new();
        s.take("a", &mut out).await.unwrap();
        assert_eq!(out.len(), 1);
        out.clear();
        s.take("b", &mut out).await.unwrap();
        assert_eq!(out, vec![Row("b".into(), 2), Row("b".into(), 3)]);
        assert_eq!(s.peek().await.unwrap(), Some("c"));
        out.clear();
        s.take("c", &mut out).await.unwrap();
        assert_eq!(s.peek().await.unwrap(), None);
    }

    /// A stream out of key order is an error, not a silent mis-join.
    #[tokio::test]
    async fn out_of_order_is_an_error() {
        let mut s = stream(vec![vec![("b", 1), ("a", 2)]]);
        let err = s.peek().await.unwrap_err();
        assert!(matches!(err, VerifyError::OutOfOrder { .. }), "{err}");
    }

    /// The merge key is the smallest present key.
    #[test]
    fn min_key_ignores_exhausted_streams() {
        assert_eq!(min_key([None, Some("b"), Some("a")]), Some("a".into()));
        assert_eq!(min_key([None, None]), None);
    }
}
