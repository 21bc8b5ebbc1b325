//! Sorted row streams and their merge by order id.
//!
//! Each stream reads one table `ORDER BY order_id` on tasks of its own (a `COPY` from
//! PostgreSQL, keyset pages from SQLite), decodes the rows and hands them over in chunks
//! through a bounded channel: memory stays bounded whatever the size of the run, and reading
//! and decoding run beside the merge. Keys are compared byte-wise (Rust's
//! `str` order), so PostgreSQL queries sort with `COLLATE "C"`; a stream that yields a key
//! out of order is an error, never a silent mis-join.

use sqlx::AnyPool;
use tokio::sync::mpsc;

use crate::VerifyError;
use crate::model::StoreTag;
use crate::rows::{FromColumns, spawn_copy_chunks};

pub use evidence::reads::PageSql;

/// A row with an order id to merge on, compared as bytes (the order of Rust's `str`).
pub trait Keyed {
    fn key(&self) -> &[u8];
}

/// A stream of rows sorted by key.
#[derive(Debug)]
pub struct Sorted<T> {
    name: &'static str,
    rx: mpsc::Receiver<Result<Vec<T>, String>>,
    /// The rest of the chunk being taken from (rows move out of it once, into the order).
    buffer: std::vec::IntoIter<T>,
    /// Per row of the chunk: its key is the one of the row before it (in the stream), as
    /// found by the order check; the runs of one key are taken by these, not compared again.
    same: Vec<bool>,
    /// Rows of the chunk taken so far.
    taken: usize,
    done: bool,
    last_key: Option<Vec<u8>>,
}

impl<T: Keyed + Send + 'static> Sorted<T> {
    /// Reads in pages. Each query of `pages` returns one row: a JSON array of at most
    /// `page_rows` items in key order, the first and last key on the page, and the item
    /// count; `pages.from` takes keys `>= $1`, `pages.after` keys `> $1`. One row per page
    /// instead of one per item keeps the database driver's per-row cost out of the
    /// verifier's time.
    ///
    /// A full page may end inside one key's rows: those rows are dropped from it and the
    /// next page starts at that key. So the next query's bound is known before the page is
    /// decoded, and the next page is read while this one is decoded. A full page of one
    /// key is read again whole with `pages.one_key`.
    pub fn spawn_pages(
        name: &'static str,
        pool: AnyPool,
        pages: PageSql,
        page_rows: usize,
        decode: impl Fn(&str) -> Result<Vec<T>, String> + Send + Sync + 'static,
    ) -> Self {
        let (tx, rx) = mpsc::channel(2);
        // Page texts, with the key whose rows they must drop.
        let (text_tx, mut text_rx) = mpsc::channel::<Result<(String, Option<String>), String>>(1);
        tokio::spawn(async move {
            // One connection of its own for the whole stream (see `store::reader`).
            let mut conn = match evidence::store::reader(&pool).await {
                Ok(conn) => conn,
                Err(err) => {
                    let _ = text_tx.send(Err(err.to_string())).await;
                    return;
                }
            };
            let mut fetch = async |sql: &str, bound: &str| {
                sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
                    .bind(bound)
                    .fetch_one(&mut conn)
                    .await
                    .and_then(|row| {
                        use sqlx::Row;
                        Ok((
                            row.try_get::<Option<String>, _>(0)?,
                            row.try_get::<Option<String>, _>(1)?,
                            row.try_get::<Option<String>, _>(2)?,
                            row.try_get::<i64, _>(3)?,
                        ))
                    })
            };
            let mut bound = (String::new(), true);
            loop {
                let sql = if bound.1 { &pages.from } else { &pages.after };
                let mut page = fetch(sql, &bound.0).await;
                let mut whole_key = false;
                if let Ok((_, Some(first), Some(last), count)) = &page
                    && first == last
                    && usize::try_from(*count).unwrap_or(usize::MAX) >= page_rows
                {
                    // One key fills the page: take all of its rows at once.
                    let key = first.clone();
                    page = fetch(&pages.one_key, &key).await;
                    whole_key = true;
                }
                let (text, first, last, count) = match page {
                    Ok(page) => page,
                    Err(err) => {
                        let _ = text_tx.send(Err(err.to_string())).await;
                        return;
                    }
                };
                let (Some(text), Some(first), Some(last)) = (text, first, last) else {
                    return;
                };
                // More may follow a full page, or a key read whole.
                let full = whole_key || usize::try_from(count).unwrap_or(usize::MAX) >= page_rows;
                let drop_key = (full && first != last).then(|| last.clone());
                // Past a split key, the next page starts at it; past a key read whole, after it.
                let next = (last, drop_key.is_some());
                if text_tx.send(Ok((text, drop_key))).await.is_err() || !full {
                    return;
                }
                bound = next;
            }
        });
        tokio::spawn(async move {
            while let Some(page) = text_rx.recv().await {
                let items = page.and_then(|(text, drop_key)| {
                    let mut items = decode(&text)?;
                    if let Some(key) = drop_key {
                        let keep = items
                            .iter()
                            .rposition(|i| i.key() != key.as_bytes())
                            .map_or(0, |i| i + 1);
                        items.truncate(keep);
                    }
                    Ok(items)
                });
                let failed = items.is_err();
                if tx.send(items).await.is_err() || failed {
                    return;
                }
            }
        });
        Self::from_receiver(name, rx)
    }

    /// Streams `sql` (its select list [`FromColumns::COLUMNS`], in key order) from
    /// PostgreSQL with `COPY (sql) TO STDOUT` on a connection of its own under the planner
    /// settings `plan`, decoding each line as a row from `store`.
    pub fn spawn_copy(
        name: &'static str,
        target: evidence::store::PgTarget,
        plan: &'static str,
        sql: String,
        store: StoreTag,
    ) -> Self
    where
        T: FromColumns,
    {
        Self::from_receiver(name, spawn_copy_chunks(target, plan, sql, store))
    }

    /// An empty stream (for evidence that is not there, e.g. no client history).
    pub fn empty(name: &'static str) -> Self {
        let (_tx, rx) = mpsc::channel(1);
        Self {
            name,
            rx,
            buffer: Vec::new().into_iter(),
            same: Vec::new(),
            taken: 0,
            done: true,
            last_key: None,
        }
    }

    fn from_receiver(name: &'static str, rx: mpsc::Receiver<Result<Vec<T>, String>>) -> Self {
        Self {
            name,
            rx,
            buffer: Vec::new().into_iter(),
            same: Vec::new(),
            taken: 0,
            done: false,
            last_key: None,
        }
    }

    async fn fill(&mut self) -> Result<(), VerifyError> {
        while self.buffer.as_slice().is_empty() && !self.done {
            match self.rx.recv().await {
                Some(Ok(chunk)) => {
                    // Each key against the one before it; only the chunk's last is kept.
                    self.same.clear();
                    let mut before = self.last_key.as_deref();
                    for row in &chunk {
                        let order = before.map(|last| row.key().cmp(last));
                        if let (Some(std::cmp::Ordering::Less), Some(last)) = (order, before) {
                            return Err(VerifyError::OutOfOrder {
                                stream: self.name,
                                key: String::from_utf8_lossy(row.key()).into_owned(),
                                after: String::from_utf8_lossy(last).into_owned(),
                            });
                        }
                        self.same.push(order == Some(std::cmp::Ordering::Equal));
                        before = Some(row.key());
                    }
                    if let Some(last) = chunk.last() {
                        self.last_key = Some(last.key().to_vec());
                    }
                    self.buffer = chunk.into_iter();
                    self.taken = 0;
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
    pub async fn peek(&mut self) -> Result<Option<&[u8]>, VerifyError> {
        self.fill().await?;
        Ok(self.front_key())
    }

    /// Makes the next row (if any) available to [`Sorted::front_key`].
    pub async fn ready(&mut self) -> Result<(), VerifyError> {
        if self.done || !self.buffer.as_slice().is_empty() {
            return Ok(());
        }
        self.fill().await
    }

    /// The next key after [`Sorted::ready`], without waiting.
    pub fn front_key(&self) -> Option<&[u8]> {
        self.buffer.as_slice().first().map(Keyed::key)
    }

    /// Moves every row with `key` into `out`.
    pub async fn take(&mut self, key: &[u8], out: &mut Vec<T>) -> Result<(), VerifyError> {
        // Most streams hold no row of most keys: answered without touching the channel.
        if self.front_key().is_some_and(|front| front != key) {
            return Ok(());
        }
        let mut first = true;
        loop {
            self.fill().await?;
            let Some(front) = self.front_key() else {
                return Ok(());
            };
            // The rows of `key` at the front of this chunk, moved out together: the first
            // compared with `key`, the rest (and, past the end of a chunk, the next chunk's
            // first) by the order check's flags.
            let same = |from: usize| {
                self.same
                    .get(from..)
                    .unwrap_or_default()
                    .iter()
                    .take_while(|same| **same)
                    .count()
            };
            let n = if first {
                if front != key {
                    return Ok(());
                }
                1 + same(self.taken + 1)
            } else {
                same(self.taken)
            };
            if n == 0 {
                return Ok(());
            }
            out.extend(self.buffer.by_ref().take(n));
            self.taken += n;
            if !self.buffer.as_slice().is_empty() {
                return Ok(());
            }
            first = false;
        }
    }
}

/// The smallest of some keys.
pub fn min_key<'a>(keys: impl IntoIterator<Item = Option<&'a [u8]>>) -> Option<&'a [u8]> {
    keys.into_iter().flatten().min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Row(String, i64);

    impl Keyed for Row {
        fn key(&self) -> &[u8] {
            self.0.as_bytes()
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
        assert_eq!(s.peek().await.unwrap(), Some(&b"a"[..]));
        let mut out = Vec::new();
        s.take(b"a", &mut out).await.unwrap();
        assert_eq!(out.len(), 1);
        out.clear();
        s.take(b"b", &mut out).await.unwrap();
        assert_eq!(out, vec![Row("b".into(), 2), Row("b".into(), 3)]);
        assert_eq!(s.peek().await.unwrap(), Some(&b"c"[..]));
        out.clear();
        s.take(b"c", &mut out).await.unwrap();
        assert_eq!(s.peek().await.unwrap(), None);

        // A run over three chunks; a chunk that starts a new key after a run ended one.
        let mut s = stream(vec![
            vec![("a", 1)],
            vec![("a", 2)],
            vec![("a", 3), ("b", 4)],
            vec![("b", 5)],
            vec![("c", 6)],
        ]);
        let mut out = Vec::new();
        s.take(b"a", &mut out).await.unwrap();
        assert_eq!(out.iter().map(|r| r.1).collect::<Vec<_>>(), [1, 2, 3]);
        out.clear();
        s.take(b"b", &mut out).await.unwrap();
        assert_eq!(out.iter().map(|r| r.1).collect::<Vec<_>>(), [4, 5]);
        out.clear();
        s.take(b"b", &mut out).await.unwrap();
        assert!(out.is_empty(), "the run of b ended");
        s.take(b"c", &mut out).await.unwrap();
        assert_eq!(out.iter().map(|r| r.1).collect::<Vec<_>>(), [6]);
    }

    /// A stream out of key order is an error, not a silent mis-join.
    #[tokio::test]
    async fn out_of_order_is_an_error() {
        let mut s = stream(vec![vec![("b", 1), ("a", 2)]]);
        let err = s.peek().await.unwrap_err();
        assert!(matches!(err, VerifyError::OutOfOrder { .. }), "{err}");
    }

    /// Pages that end inside a key's rows, and a key with more rows than a page, lose and
    /// repeat nothing: every row arrives once, in order.
    #[tokio::test]
    async fn pages_split_inside_a_key_lose_and_repeat_nothing() {
        sqlx::any::install_default_drivers();
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .unwrap();
        let keys = [
            "a", "a", "a", "b", "b", "b", "c", "d", "d", "d", "d", "d", "d", "e",
        ];
        sqlx::raw_sql("CREATE TABLE t (k TEXT, v INTEGER)")
            .execute(&pool)
            .await
            .unwrap();
        for (v, k) in keys.iter().enumerate() {
            sqlx::query("INSERT INTO t VALUES ($1, $2)")
                .bind(*k)
                .bind(v as i64)
                .execute(&pool)
                .await
                .unwrap();
        }
        let sql = |op: &str, limit: &str| {
            format!(
                "SELECT json_group_array(json_array(k, v)), min(k), max(k), count(*) FROM \
                 (SELECT k, v FROM t WHERE k {op} $1 ORDER BY k, v{limit})"
            )
        };
        let pages = PageSql {
            from: sql(">=", " LIMIT 4"),
            after: sql(">", " LIMIT 4"),
            one_key: sql("=", ""),
        };
        let mut s = Sorted::spawn_pages("t", pool, pages, 4, |text| {
            let rows: Vec<(String, i64)> = serde_json::from_str(text).map_err(|e| e.to_string())?;
            Ok(rows.into_iter().map(|(k, v)| Row(k, v)).collect())
        });
        let mut out = Vec::new();
        while let Some(key) = s.peek().await.unwrap().map(<[u8]>::to_vec) {
            s.take(&key, &mut out).await.unwrap();
        }
        let got: Vec<(&str, i64)> = out.iter().map(|r| (r.0.as_str(), r.1)).collect();
        let want: Vec<(&str, i64)> = keys.iter().copied().zip(0..).collect();
        assert_eq!(got, want);
    }

    /// The merge key is the smallest present key.
    #[test]
    fn min_key_ignores_exhausted_streams() {
        assert_eq!(
            min_key([None, Some(&b"b"[..]), Some(&b"a"[..])]),
            Some(&b"a"[..])
        );
        assert_eq!(min_key([None, None]), None);
    }
}
