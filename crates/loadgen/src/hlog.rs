//! HdrHistogram interval logs (`.hlog`), as the Java tools (HistogramLogProcessor,
//! HistogramLogAnalyzer, HdrLogProcessing) read them: a version comment, StartTime and
//! BaseTime, the legend, then one line per interval and tag:
//! `[Tag=T,]start_s,length_s,max_ms,base64(V2 + DEFLATE histogram)`, values in nanoseconds
//! (the max column in milliseconds, as the Java writer divides it by 10^6).
//!
//! The lines are written here rather than with the crate's `IntervalLogWriter`, whose
//! borrowed writer cannot live across the intervals of a run; the crate's reader
//! (`IntervalLogIterator`) parses them back, which the tests check.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};

use crate::LoadgenError;
use crate::observer::{IntervalView, Observer};
use crate::report::new_histogram;

/// Divisor of the max column: nanosecond values, millisecond maxima (the Java default).
const MAX_VALUE_DIVISOR: f64 = 1e6;

/// Writes an interval log; as an [`Observer`] it writes every tag of every interval.
pub struct HlogWriter<W: Write> {
    out: W,
    serializer: V2DeflateSerializer,
    buffer: Vec<u8>,
    text: String,
    comment: Option<String>,
    header_written: bool,
    /// The first write error: observers cannot fail, so it is kept for [`HlogWriter::finish`].
    error: Option<io::Error>,
}

impl<W: Write> std::fmt::Debug for HlogWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HlogWriter")
            .field("header_written", &self.header_written)
            .finish_non_exhaustive()
    }
}

impl<W: Write> HlogWriter<W> {
    /// A writer to `out`; the header is written with the first interval.
    pub fn new(out: W) -> Self {
        Self {
            out,
            serializer: V2DeflateSerializer::new(),
            buffer: Vec::new(),
            text: String::new(),
            comment: None,
            header_written: false,
            error: None,
        }
    }

    /// Adds a comment line to the header (e.g. the command that made the log).
    pub fn with_comment(mut self, comment: &str) -> Self {
        self.comment = Some(comment.replace(['\n', '\r'], " "));
        self
    }

    /// Writes the header with `start` as StartTime and BaseTime (interval times are offsets).
    pub fn write_header(&mut self, start: SystemTime) -> Result<(), LoadgenError> {
        let seconds = start
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        let mut header = String::from("#[Histogram log format version 1.3]\n");
        if let Some(comment) = &self.comment {
            header.push_str(&format!("#[{comment}]\n"));
        }
        header.push_str(&format!(
            "#[StartTime: {seconds:.3} (seconds since epoch)]\n\
             #[BaseTime: {seconds:.3} (seconds since epoch)]\n\
             #[Values in nanoseconds; Interval_Max in milliseconds]\n\
             \"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"\n"
        ));
        self.header_written = true;
        self.out
            .write_all(header.as_bytes())
            .map_err(LoadgenError::HlogWrite)
    }

    /// Writes one interval histogram; `start` is the offset from BaseTime.
    pub fn write_interval(
        &mut self,
        start: Duration,
        length: Duration,
        tag: Option<&str>,
        histogram: &Histogram<u64>,
    ) -> Result<(), LoadgenError> {
        if let Some(tag) = tag
            && tag.contains([',', ' ', '\r', '\n'])
        {
            return Err(LoadgenError::HlogWrite(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("tag {tag:?} contains a comma, space or line break"),
            )));
        }
        self.buffer.clear();
        self.serializer
            .serialize(histogram, &mut self.buffer)
            .map_err(|err| {
                LoadgenError::HlogWrite(io::Error::other(format!("serialization: {err}")))
            })?;
        self.text.clear();
        if let Some(tag) = tag {
            self.text.push_str("Tag=");
            self.text.push_str(tag);
            self.text.push(',');
        }
        self.text.push_str(&format!(
            "{:.3},{:.3},{:.3},",
            start.as_secs_f64(),
            length.as_secs_f64(),
            histogram.max() as f64 / MAX_VALUE_DIVISOR
        ));
        base64::engine::general_purpose::STANDARD.encode_string(&self.buffer, &mut self.text);
        self.text.push('\n');
        self.out
            .write_all(self.text.as_bytes())
            .map_err(LoadgenError::HlogWrite)
    }

    /// Flushes and returns the writer, or the first error met while observing.
    pub fn finish(mut self) -> Result<W, LoadgenError> {
        if let Some(err) = self.error.take() {
            return Err(LoadgenError::HlogWrite(err));
        }
        self.out.flush().map_err(LoadgenError::HlogWrite)?;
        Ok(self.out)
    }

    fn observe(&mut self, interval: &IntervalView<'_>) -> Result<(), LoadgenError> {
        if !self.header_written {
            self.write_header(interval.run_started_at)?;
        }
        for (tag, histogram) in &interval.histograms {
            self.write_interval(interval.start, interval.length, *tag, histogram)?;
        }
        Ok(())
    }
}

impl<W: Write + Send> Observer for HlogWriter<W> {
    fn on_interval(&mut self, interval: &IntervalView<'_>) {
        if self.error.is_some() {
            return;
        }
        if let Err(LoadgenError::HlogWrite(err)) = self.observe(interval) {
            self.error = Some(err);
        }
    }
}

/// The V2 encoding's cookies, with the 0x10 the encoders set (the compressed one wraps a
/// DEFLATE stream of the other).
const V2_COOKIE: u32 = 0x1c84_9313;
const V2_COMPRESSED_COOKIE: u32 = 0x1c84_9314;
/// The V2 header: cookie, payload length, normalizing offset, digits, low, high, ratio.
const V2_HEADER_BYTES: usize = 40;
/// Largest inflated interval histogram read: a rig interval's is a few KiB, a 3-digit one
/// over every value with every count set under 1 MiB.
const MAX_INFLATED_BYTES: u64 = 16 << 20;

/// Decodes one interval's histogram with bounded memory. The hdrhistogram decoder sizes a
/// buffer by the length its header claims (up to 4 GiB, before reading anything), so the
/// DEFLATE stream is inflated here first, at most [`MAX_INFLATED_BYTES`], and the decoder
/// only gets a V2 encoding whose claimed payload is there. On some malformed payloads the
/// decoder's arithmetic overflows, which panics where overflow checks are on (debug
/// builds): that is a bad histogram too. (Both found by fuzzing.)
fn decode_interval(raw: &[u8], deserializer: &mut Deserializer) -> Result<Histogram<u64>, String> {
    use std::io::Read;
    let word = |bytes: &[u8], at: usize| -> Option<u32> {
        Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
    };
    let inflated;
    let v2: &[u8] = match word(raw, 0) {
        Some(V2_COMPRESSED_COOKIE) => {
            let length = word(raw, 4).ok_or("a truncated histogram")? as usize;
            let zipped = raw
                .get(8..8 + length)
                .ok_or("a histogram shorter than its header says")?;
            let mut out = Vec::new();
            flate2::read::ZlibDecoder::new(zipped)
                .take(MAX_INFLATED_BYTES + 1)
                .read_to_end(&mut out)
                .map_err(|err| format!("a histogram that does not inflate ({err})"))?;
            if out.len() as u64 > MAX_INFLATED_BYTES {
                return Err(format!(
                    "a histogram that inflates past {} MiB",
                    MAX_INFLATED_BYTES >> 20
                ));
            }
            inflated = out;
            &inflated
        }
        Some(V2_COOKIE) => raw,
        _ => return Err("not an HdrHistogram V2 encoding".into()),
    };
    if word(v2, 0) != Some(V2_COOKIE) {
        return Err("not an HdrHistogram V2 encoding inside its DEFLATE stream".into());
    }
    let claimed = word(v2, 4).ok_or("a truncated histogram")? as usize;
    if v2.len() < V2_HEADER_BYTES || v2.len() - V2_HEADER_BYTES < claimed {
        return Err("a histogram shorter than its header says".into());
    }
    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        deserializer.deserialize::<u64, _>(&mut &v2[..V2_HEADER_BYTES + claimed])
    }));
    match decoded {
        Ok(result) => result.map_err(|err| format!("bad histogram in an interval: {err:?}")),
        Err(_) => {
            // The decoder may be mid-state; the next interval gets a fresh one.
            *deserializer = Deserializer::new();
            Err("bad histogram in an interval: its counts overflow".into())
        }
    }
}

/// Histograms of one or more interval logs, added up per tag: exact, since HdrHistogram
/// addition of same-precision histograms loses nothing.
#[derive(Debug, Default)]
pub struct MergedLog {
    /// Total per tag (`None`: the untagged line).
    pub tags: BTreeMap<Option<String>, Histogram<u64>>,
    /// Interval lines read.
    pub intervals: u64,
    /// Logs read.
    pub logs: usize,
}

impl MergedLog {
    /// Nothing merged yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses one log (`source_name` names it in errors) and adds its intervals.
    pub fn add_log(&mut self, source_name: &str, bytes: &[u8]) -> Result<(), LoadgenError> {
        let bad = |problem: String| LoadgenError::HlogRead {
            source_name: source_name.to_string(),
            problem,
        };
        let mut deserializer = Deserializer::new();
        let mut found = 0;
        for entry in IntervalLogIterator::new(bytes) {
            let entry = entry.map_err(|err| bad(format!("{err:?}")))?;
            let LogEntry::Interval(interval) = entry else {
                continue;
            };
            let raw = base64::engine::general_purpose::STANDARD
                .decode(interval.encoded_histogram())
                .map_err(|err| bad(format!("bad base64 in an interval: {err}")))?;
            let histogram = decode_interval(&raw, &mut deserializer).map_err(bad)?;
            let tag = interval.tag().map(|t| t.as_str().to_string());
            let total = self.tags.entry(tag).or_insert_with(new_histogram);
            total
                .add(&histogram)
                .map_err(|err| bad(format!("cannot add an interval: {err:?}")))?;
            found += 1;
        }
        if found == 0 {
            return Err(bad("no interval lines".into()));
        }
        self.intervals += found;
        self.logs += 1;
        Ok(())
    }

    /// Total count of a tag (0 when absent).
    pub fn count(&self, tag: Option<&str>) -> u64 {
        self.tags
            .get(&tag.map(str::to_string))
            .map_or(0, Histogram::len)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use hdrhistogram::serialization::V2Serializer;

    use super::*;

    fn v2(histogram: &Histogram<u64>) -> Vec<u8> {
        let mut out = Vec::new();
        V2Serializer::new().serialize(histogram, &mut out).unwrap();
        out
    }

    fn compressed(inner: &[u8]) -> Vec<u8> {
        let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        zlib.write_all(inner).unwrap();
        let zipped = zlib.finish().unwrap();
        let mut out = V2_COMPRESSED_COOKIE.to_be_bytes().to_vec();
        out.extend_from_slice(&(zipped.len() as u32).to_be_bytes());
        out.extend_from_slice(&zipped);
        out
    }

    /// An interval decodes as it was written, plain or compressed; a header claiming more
    /// payload than there is (4 GiB here, which the hdrhistogram decoder would allocate
    /// before reading) and a DEFLATE stream inflating past 16 MiB are refused, unallocated.
    #[test]
    fn intervals_decode_with_bounded_memory() {
        let mut histogram = new_histogram();
        histogram.record_n(1_500_000, 7).unwrap();
        let plain = v2(&histogram);
        let mut deserializer = Deserializer::new();
        for raw in [plain.clone(), compressed(&plain)] {
            let back = decode_interval(&raw, &mut deserializer).unwrap();
            assert_eq!((back.len(), back.max()), (7, histogram.max()));
        }
        let mut claims_4_gib = plain.clone();
        claims_4_gib[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        for raw in [claims_4_gib.clone(), compressed(&claims_4_gib)] {
            let err = decode_interval(&raw, &mut deserializer).unwrap_err();
            assert!(err.contains("shorter than its header says"), "{err}");
        }
        let mut bomb = plain[..V2_HEADER_BYTES].to_vec();
        bomb.resize(20 << 20, 0);
        let bomb = compressed(&bomb);
        assert!(bomb.len() < 1 << 20, "a small input");
        let err = decode_interval(&bomb, &mut deserializer).unwrap_err();
        assert!(err.contains("inflates past 16 MiB"), "{err}");
    }
}
