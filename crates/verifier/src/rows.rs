//! Row decoding for the bulk readers, one decoder per row type for both wire shapes:
//! - PostgreSQL: `COPY (query) TO STDOUT` text lines ([`Fields`]). A million-order store is
//!   about nine million rows; fetched as query rows each costs the driver per-row and
//!   per-column work, and paged as server-built JSON the server spends more building the
//!   text than reading the table. `COPY` has the server write each row as one
//!   tab-separated line, parsed here with no allocation but the row's own strings.
//! - SQLite: pages of JSON arrays of row arrays ([`decode_json_page`]), one driver row per
//!   page (SQLite runs in-process, so the per-row driver cost is what paging saves).

use std::borrow::Cow;
use std::marker::PhantomData;

use serde::de::{DeserializeSeed, Error as _, IgnoredAny, SeqAccess, Visitor};

use evidence::store::PgTarget;
use evidence::{Key, Word};
use futures_util::TryStreamExt;

use crate::model::StoreTag;

/// Rows handed over at a time.
const CHUNK: usize = 512;

/// Runs `COPY (sql) TO STDOUT` on a connection of its own and hands the decoded rows to
/// `deliver` in chunks of [`CHUNK`], until the end or until `deliver` returns false (then
/// dropping the connection ends the `COPY`). `plan` is more settings for the connection
/// (`SET ...` statements, or empty).
pub async fn copy_chunks<T: FromColumns, F: Future<Output = bool>>(
    target: &PgTarget,
    plan: &str,
    sql: &str,
    store: StoreTag,
    mut deliver: impl FnMut(Vec<T>) -> F,
) -> Result<(), String> {
    let mut conn = target.connect().await.map_err(|e| e.to_string())?;
    // No JIT and no parallel workers: the verifier already runs a dozen streams at once, a
    // streamed read is planned at a cost that makes PostgreSQL compile it (0.6 s of the
    // 2.7 s the provider log's walk took on a million-order store) and split it over
    // workers that compete with the other streams for the same cores. A million orders on
    // two cores: 9.8-10.2 s with both, 10.0-10.6 s without JIT alone, 9.4-9.5 s without both.
    let settings = format!("SET jit = off; SET max_parallel_workers_per_gather = 0; {plan}");
    sqlx::raw_sql(sqlx::AssertSqlSafe(settings))
        .execute(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    let mut lines = conn
        .copy_out_raw(&format!("COPY ({sql}) TO STDOUT"))
        .await
        .map_err(|e| e.to_string())?;
    // The start of a line whose end has not arrived yet.
    let mut partial: Vec<u8> = Vec::new();
    let mut chunk = Vec::with_capacity(CHUNK);
    while let Some(data) = lines.try_next().await.map_err(|e| e.to_string())? {
        if partial.is_empty() {
            let used = decode_lines(&data, store, &mut chunk)?;
            partial.extend_from_slice(&data[used..]);
        } else {
            partial.extend_from_slice(&data);
            let used = decode_lines(&partial, store, &mut chunk)?;
            partial.drain(..used);
        }
        if chunk.len() >= CHUNK {
            let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
            if !deliver(full).await {
                return Ok(());
            }
        }
    }
    if !partial.is_empty() {
        return Err("the COPY output ended inside a row".to_string());
    }
    if !chunk.is_empty() {
        deliver(chunk).await;
    }
    Ok(())
}

/// [`copy_chunks`] on a task of its own: the decoded chunks (or the reason the read
/// failed) arrive through the returned channel, a few chunks ahead of the reader.
pub fn spawn_copy_chunks<T: FromColumns + Send + 'static>(
    target: PgTarget,
    plan: &'static str,
    sql: String,
    store: StoreTag,
) -> tokio::sync::mpsc::Receiver<Result<Vec<T>, String>> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        let sent = copy_chunks(&target, plan, &sql, store, |chunk| {
            let tx = tx.clone();
            async move { tx.send(Ok(chunk)).await.is_ok() }
        })
        .await;
        if let Err(reason) = sent {
            let _ = tx.send(Err(reason)).await;
        }
    });
    rx
}

/// The columns of one row, read left to right.
pub trait Columns {
    /// A nullable text column.
    fn opt_text(&mut self) -> Result<Option<String>, String>;
    /// A nullable integer column.
    fn opt_int(&mut self) -> Result<Option<i64>, String>;

    /// A nullable text column from a small vocabulary ([`Word`]).
    fn opt_word(&mut self) -> Result<Option<Word>, String> {
        Ok(self.opt_text()?.map(Word::from))
    }

    /// A text column from a small vocabulary that is never NULL.
    fn word(&mut self) -> Result<Word, String> {
        self.opt_word()?
            .ok_or_else(|| "NULL in a NOT NULL text column".to_string())
    }

    /// A nullable identifier column ([`Key`]).
    fn opt_key(&mut self) -> Result<Option<Key>, String> {
        Ok(self.opt_text()?.map(|text| Key::new(&text)))
    }

    /// An identifier column that is never NULL.
    fn key(&mut self) -> Result<Key, String> {
        self.opt_key()?
            .ok_or_else(|| "NULL in a NOT NULL text column".to_string())
    }

    /// A text column that is never NULL.
    fn text(&mut self) -> Result<String, String> {
        self.opt_text()?
            .ok_or_else(|| "NULL in a NOT NULL text column".to_string())
    }

    /// An integer column that is never NULL.
    fn int(&mut self) -> Result<i64, String> {
        self.opt_int()?
            .ok_or_else(|| "NULL in a NOT NULL integer column".to_string())
    }
}

/// A row type read column by column, in the order of its query's select list.
pub trait FromColumns: Sized {
    /// The select list, in decoding order.
    const COLUMNS: &'static str;

    /// Decodes one row read from `store`.
    fn from_columns(columns: &mut impl Columns, store: StoreTag) -> Result<Self, String>;
}

/// The fields of one `COPY` text line, read left to right.
#[derive(Debug)]
pub struct Fields<'a> {
    rest: Option<&'a str>,
}

impl<'a> Fields<'a> {
    /// The fields of `line` (without its newline), already checked to be UTF-8.
    pub fn new(line: &'a str) -> Self {
        Self { rest: Some(line) }
    }

    /// The next field as `COPY` wrote it, `None` for SQL NULL, and whether it holds an
    /// escape to undo.
    fn next_field(&mut self) -> Result<Option<(&'a str, bool)>, String> {
        let rest = self
            .rest
            .ok_or_else(|| "a row has fewer columns than expected".to_string())?;
        let (end, escaped) = tab_and_escape(rest.as_bytes());
        // A tab is one byte in UTF-8, so the split is on a character boundary.
        let field = &rest[..end];
        self.rest = rest.get(end + 1..);
        Ok((field != "\\N").then_some((field, escaped)))
    }

    /// Checks every column was read.
    fn end(&self) -> Result<(), String> {
        match self.rest {
            None => Ok(()),
            Some(_) => Err("a row has more columns than expected".to_string()),
        }
    }
}

impl<'a> Fields<'a> {
    /// The next field as text, `None` for SQL NULL: borrowed from the line, or owned when
    /// an escape had to be undone.
    fn next_text(&mut self) -> Result<Option<Cow<'a, str>>, String> {
        match self.next_field()? {
            None => Ok(None),
            Some((field, false)) => Ok(Some(Cow::Borrowed(field))),
            Some((field, true)) => String::from_utf8(unescape(field.as_bytes()))
                .map(|text| Some(Cow::Owned(text)))
                .map_err(|_| "a field is not UTF-8".to_string()),
        }
    }
}

impl Columns for Fields<'_> {
    fn opt_text(&mut self) -> Result<Option<String>, String> {
        Ok(self.next_text()?.map(Cow::into_owned))
    }

    fn opt_word(&mut self) -> Result<Option<Word>, String> {
        Ok(self.next_text()?.map(|text| match text {
            Cow::Borrowed(text) => Word::new(text),
            Cow::Owned(text) => Word::from(text),
        }))
    }

    fn opt_key(&mut self) -> Result<Option<Key>, String> {
        Ok(self.next_text()?.map(|text| Key::new(&text)))
    }

    fn opt_int(&mut self) -> Result<Option<i64>, String> {
        // Up to 18 digits and then a tab or the end of the line, read in one pass (eight
        // digits at a time while they last); anything else by the general path.
        if let Some(rest) = self.rest {
            let bytes = rest.as_bytes();
            let (value, at) = leading_digits(bytes);
            if at > 0 && matches!(bytes.get(at), None | Some(b'\t')) {
                self.rest = rest.get(at + 1..);
                return Ok(Some(value));
            }
        }
        // Digits only: no escape to undo.
        let Some((field, _)) = self.next_field()? else {
            return Ok(None);
        };
        parse_i64(field.as_bytes())
            .map(Some)
            .ok_or_else(|| format!("{field:?} is not an integer"))
    }
}

/// Where the first tab in `bytes` is (its length if none), and whether a backslash comes
/// before it: one pass, eight bytes at a time (fields are short, so this beats a
/// vectorised search started per field).
fn tab_and_escape(bytes: &[u8]) -> (usize, bool) {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // The high bit of each zero byte of `v`; exact up to the first zero byte, which is
    // all that is read of it.
    let zeros = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
    let mut escaped = false;
    let mut words = bytes.chunks_exact(8);
    let mut at = 0;
    for word in words.by_ref() {
        let mut eight = [0u8; 8];
        eight.copy_from_slice(word);
        let v = u64::from_le_bytes(eight);
        let tabs = zeros(v ^ (ONES * u64::from(b'\t')));
        let slashes = zeros(v ^ (ONES * u64::from(b'\\')));
        if tabs != 0 {
            let tab = tabs.trailing_zeros();
            return (
                at + tab as usize / 8,
                escaped || slashes.trailing_zeros() < tab,
            );
        }
        escaped |= slashes != 0;
        at += 8;
    }
    for &b in words.remainder() {
        if b == b'\t' {
            return (at, escaped);
        }
        escaped |= b == b'\\';
        at += 1;
    }
    (at, escaped)
}

/// A decimal `i64` (optional leading `-`), `None` for anything else or an overflow.
fn parse_i64(bytes: &[u8]) -> Option<i64> {
    let (negative, digits) = match bytes.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, bytes),
    };
    if digits.is_empty() {
        return None;
    }
    if digits.len() <= 18 {
        let (value, read) = leading_digits(digits);
        return (read == digits.len()).then_some(if negative { -value } else { value });
    }
    let mut value: i64 = 0;
    for &b in digits {
        let digit = i64::from(b.wrapping_sub(b'0'));
        if !(0..=9).contains(&digit) {
            return None;
        }
        // Accumulated negatively, so i64::MIN parses too.
        value = value.checked_mul(10)?.checked_sub(digit)?;
    }
    if negative {
        Some(value)
    } else {
        value.checked_neg()
    }
}

/// The value of the decimal digits `bytes` starts with and how many there are, at most 18
/// (so no check per digit: it cannot overflow): eight at a time while they last (a
/// timestamp is two groups), then one at a time.
fn leading_digits(bytes: &[u8]) -> (i64, usize) {
    let mut value: i64 = 0;
    let mut at = 0;
    while at < 16 {
        match bytes.get(at..at + 8).and_then(eight_digits) {
            Some(eight) => {
                value = value * 100_000_000 + eight;
                at += 8;
            }
            None => break,
        }
    }
    while at < 18 {
        match bytes.get(at) {
            Some(b) if b.is_ascii_digit() => {
                value = value * 10 + i64::from(b - b'0');
                at += 1;
            }
            _ => break,
        }
    }
    (value, at)
}

/// The value of eight ASCII decimal digits, `None` if any byte is not one: the digits'
/// values summed in pairs, then quads, then the two halves, within one word.
fn eight_digits(group: &[u8]) -> Option<i64> {
    let mut eight = [0u8; 8];
    eight.copy_from_slice(group);
    let v = u64::from_le_bytes(eight).wrapping_sub(0x3030_3030_3030_3030);
    // A byte below '0' wrapped to 0x80 or more; one above '9' is 10 or more, and adding
    // 0x76 carries it to 0x80 or more.
    if (v | v.wrapping_add(0x7676_7676_7676_7676)) & 0x8080_8080_8080_8080 != 0 {
        return None;
    }
    // The first digit is the lowest byte (little-endian): each step keeps the earlier
    // digits as the higher ones.
    let pairs = (v.wrapping_mul(10) + (v >> 8)) & 0x00ff_00ff_00ff_00ff;
    let quads = (pairs.wrapping_mul(100) + (pairs >> 16)) & 0x0000_ffff_0000_ffff;
    let value = (quads.wrapping_mul(10_000) + (quads >> 32)) & 0xffff_ffff;
    i64::try_from(value).ok()
}

/// Undoes `COPY` text escaping: `\t`, `\n`, `\\`, ... and octal / `\x` hex byte escapes.
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let b = field[i];
        i += 1;
        if b != b'\\' || i == field.len() {
            out.push(b);
            continue;
        }
        let c = field[i];
        i += 1;
        match c {
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(0x0b),
            b'0'..=b'7' => {
                let mut value = u32::from(c - b'0');
                let mut digits = 1;
                while digits < 3 && i < field.len() && (b'0'..=b'7').contains(&field[i]) {
                    value = value * 8 + u32::from(field[i] - b'0');
                    i += 1;
                    digits += 1;
                }
                out.push(value as u8);
            }
            b'x' if i < field.len() && field[i].is_ascii_hexdigit() => {
                let mut value = 0u32;
                let mut digits = 0;
                while digits < 2 && i < field.len() && field[i].is_ascii_hexdigit() {
                    value = value * 16 + char::from(field[i]).to_digit(16).unwrap_or(0);
                    i += 1;
                    digits += 1;
                }
                out.push(value as u8);
            }
            other => out.push(other),
        }
    }
    out
}

/// Decodes every complete `COPY` line at the start of `data` into `out`; returns the bytes
/// used (the rest is the start of a line still arriving).
pub fn decode_lines<T: FromColumns>(
    data: &[u8],
    store: StoreTag,
    out: &mut Vec<T>,
) -> Result<usize, String> {
    // Each complete line is checked for UTF-8 once (a newline is one byte, so the cut is
    // on a character boundary); each field is then a slice of checked text.
    let mut used = 0;
    while let Some(end) = memchr::memchr(b'\n', &data[used..]) {
        let line = std::str::from_utf8(&data[used..used + end])
            .map_err(|_| "a field is not UTF-8".to_string())?;
        let mut fields = Fields::new(line);
        let row = T::from_columns(&mut fields, store)?;
        fields.end()?;
        out.push(row);
        used += end + 1;
    }
    Ok(used)
}

/// Decodes a JSON array of row arrays (`[[col, col, ...], ...]`).
pub fn decode_json_page<T: FromColumns>(text: &str, store: StoreTag) -> Result<Vec<T>, String> {
    let mut de = serde_json::Deserializer::from_str(text);
    let rows = Page::<T>(store, PhantomData)
        .deserialize(&mut de)
        .and_then(|rows| de.end().map(|()| rows))
        .map_err(|err| err.to_string())?;
    Ok(rows)
}

struct Page<T>(StoreTag, PhantomData<T>);
struct Row<T>(StoreTag, PhantomData<T>);

impl<'de, T: FromColumns> DeserializeSeed<'de> for Page<T> {
    type Value = Vec<T>;
    fn deserialize<D: serde::Deserializer<'de>>(self, de: D) -> Result<Vec<T>, D::Error> {
        de.deserialize_seq(self)
    }
}

impl<'de, T: FromColumns> Visitor<'de> for Page<T> {
    type Value = Vec<T>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array of rows")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let mut rows = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(row) = seq.next_element_seed(Row::<T>(self.0, PhantomData))? {
            rows.push(row);
        }
        Ok(rows)
    }
}

impl<'de, T: FromColumns> DeserializeSeed<'de> for Row<T> {
    type Value = T;
    fn deserialize<D: serde::Deserializer<'de>>(self, de: D) -> Result<T, D::Error> {
        de.deserialize_seq(self)
    }
}

impl<'de, T: FromColumns> Visitor<'de> for Row<T> {
    type Value = T;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a row array")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<T, A::Error> {
        let mut columns = JsonColumns {
            seq,
            _de: PhantomData,
        };
        let row = T::from_columns(&mut columns, self.0).map_err(A::Error::custom)?;
        if columns.seq.next_element::<IgnoredAny>()?.is_some() {
            return Err(A::Error::custom("a row has more columns than expected"));
        }
        Ok(row)
    }
}

/// The elements of one JSON row array as columns.
struct JsonColumns<'de, A> {
    seq: A,
    _de: PhantomData<&'de ()>,
}

impl<'de, A: SeqAccess<'de>> JsonColumns<'de, A> {
    fn next<V: serde::Deserialize<'de>>(&mut self) -> Result<V, String> {
        self.seq
            .next_element::<V>()
            .map_err(|err| err.to_string())?
            .ok_or_else(|| "a row has fewer columns than expected".to_string())
    }
}

impl<'de, A: SeqAccess<'de>> Columns for JsonColumns<'de, A> {
    fn opt_text(&mut self) -> Result<Option<String>, String> {
        self.next()
    }
    fn opt_int(&mut self) -> Result<Option<i64>, String> {
        self.next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Probe(Option<String>, i64, Option<i64>, String, StoreTag);

    impl FromColumns for Probe {
        const COLUMNS: &'static str = "a, b, c, d";
        fn from_columns(c: &mut impl Columns, store: StoreTag) -> Result<Self, String> {
            Ok(Probe(
                c.opt_text()?,
                c.int()?,
                c.opt_int()?,
                c.text()?,
                store,
            ))
        }
    }

    fn lines(data: &[u8]) -> Result<Vec<Probe>, String> {
        let mut rows = Vec::new();
        decode_lines(data, "s", &mut rows).map(|_| rows)
    }

    #[test]
    fn copy_text_lines_decode_with_nulls_and_escapes() {
        let data = b"o1\t12\t\\N\ta\\tb\\\\c\\nd\n\\N\t-3\t7\t\\101\\x42\nhalf\t";
        let mut rows: Vec<Probe> = Vec::new();
        let used = decode_lines(data, "s", &mut rows).unwrap();
        assert_eq!(&data[used..], b"half\t", "an incomplete line waits");
        assert_eq!(
            rows,
            vec![
                Probe(Some("o1".into()), 12, None, "a\tb\\c\nd".into(), "s"),
                Probe(None, -3, Some(7), "AB".into(), "s"),
            ]
        );
        assert!(lines(b"x\t1\n").is_err(), "too few");
        assert!(lines(b"x\t1\t2\ty\tz\n").is_err(), "too many");
        assert!(lines(b"x\tone\t2\ty\n").is_err(), "not a number");
        assert!(lines(b"x\t-\t2\ty\n").is_err(), "a sign alone");
        assert!(
            lines(b"x\t99999999999999999999\t2\ty\n").is_err(),
            "overflow"
        );
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"9223372036854775808"), None);
        assert_eq!(parse_i64(b"+1"), None);
        assert!(lines(b"x\t1\t2\t\\N\n").is_err(), "NULL text");
    }

    /// The word-at-a-time search finds the first tab and a backslash only before it, at
    /// every position in and across words.
    #[test]
    fn tab_search_matches_a_plain_scan() {
        let plain = |bytes: &[u8]| {
            let end = bytes
                .iter()
                .position(|&b| b == b'\t')
                .unwrap_or(bytes.len());
            (end, bytes[..end].contains(&b'\\'))
        };
        for len in 0..20 {
            for tab in 0..=len {
                for slash in 0..=len {
                    let mut field = vec![b'x'; len];
                    if slash < len {
                        field[slash] = b'\\';
                    }
                    if tab < len {
                        field[tab] = b'\t';
                    }
                    assert_eq!(tab_and_escape(&field), plain(&field), "{field:?}");
                }
            }
        }
        let utf8 = "été\t😀\\".as_bytes();
        assert_eq!(tab_and_escape(utf8), plain(utf8));
    }

    /// Digits read eight at a time give what one at a time gives, and anything that is
    /// not a digit anywhere in a group is refused.
    #[test]
    fn integers_parse_as_digit_by_digit() {
        let slow = |text: &str| text.parse::<i64>().ok().filter(|_| !text.starts_with('+'));
        let mut rng = evidence::seed::SeededRng::new(7);
        let mut next = || rng.next_u64();
        for _ in 0..20_000 {
            let len = (next() % 20) as usize + 1;
            let mut text: String = (0..len)
                .map(|_| char::from(b'0' + (next() % 10) as u8))
                .collect();
            match next() % 4 {
                0 => text.insert(0, '-'),
                1 => {
                    let at = (next() as usize) % text.len();
                    let odd = [b'/', b':', b' ', b'a', 0xff - 0x80][(next() % 5) as usize];
                    text.replace_range(at..=at, &char::from(odd).to_string());
                }
                _ => {}
            }
            assert_eq!(parse_i64(text.as_bytes()), slow(&text), "{text:?}");
        }
        for text in [
            "1800000000000123",
            "0000000000000000",
            "9999999999999999",
            "12345678",
            "-87654321",
        ] {
            assert_eq!(parse_i64(text.as_bytes()), slow(text), "{text}");
        }
    }

    #[test]
    fn json_pages_decode_through_the_same_decoder() {
        let rows: Vec<Probe> =
            decode_json_page(r#"[["o1",12,null,"a\tb"],[null,-3,7,"x"]]"#, "s").unwrap();
        assert_eq!(
            rows,
            vec![
                Probe(Some("o1".into()), 12, None, "a\tb".into(), "s"),
                Probe(None, -3, Some(7), "x".into(), "s"),
            ]
        );
        assert!(
            decode_json_page::<Probe>(r#"[["x",1]]"#, "s").is_err(),
            "too few"
        );
        assert!(
            decode_json_page::<Probe>(r#"[["x",1,2,"y","z"]]"#, "s").is_err(),
            "too many"
        );
        assert!(
            decode_json_page::<Probe>(r#"[["x","1",2,"y"]]"#, "s").is_err(),
            "not a number"
        );
    }
}
