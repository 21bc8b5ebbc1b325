//! Toxics: Toxiproxy's seven fault types, their attributes (one file each, units in the doc
//! comment), their JSON shape on the wire, and what each does to one link.
//!
//! A *link* is one connection in one direction. Each toxic's per-link behaviour is a small
//! function of time: given a chunk and the instant it reaches the toxic, it says which bytes
//! leave and when. The proxy's data path chains these and writes each piece when it is due,
//! so chunks are never re-ordered and a chain is easy to test on a paused clock.

mod bandwidth;
mod latency;
mod limit_data;
mod reset_peer;
mod slicer;
mod slow_close;
mod timeout;

pub use bandwidth::Bandwidth;
pub use latency::Latency;
pub use limit_data::LimitData;
pub use reset_peer::ResetPeer;
pub use slicer::Slicer;
pub use slow_close::SlowClose;
pub use timeout::Timeout;

pub(crate) use bandwidth::BandwidthLink;
pub(crate) use latency::LatencyLink;
pub(crate) use limit_data::LimitDataLink;
pub(crate) use reset_peer::ResetPeerLink;
pub(crate) use slicer::SlicerLink;
pub(crate) use slow_close::SlowCloseLink;
pub(crate) use timeout::TimeoutLink;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::Instant;

/// Which bytes a toxic acts on: `upstream` = client → server, `downstream` = server → client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Upstream,
    Downstream,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Upstream => "upstream",
            Self::Downstream => "downstream",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "upstream" => Some(Self::Upstream),
            "downstream" => Some(Self::Downstream),
            _ => None,
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            Self::Upstream => 0,
            Self::Downstream => 1,
        }
    }
}

/// A toxic type with its attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Toxic {
    Latency(Latency),
    Bandwidth(Bandwidth),
    SlowClose(SlowClose),
    Timeout(Timeout),
    ResetPeer(ResetPeer),
    Slicer(Slicer),
    LimitData(LimitData),
}

/// The type names Toxiproxy uses on the wire.
pub const TOXIC_TYPES: [&str; 7] = [
    "latency",
    "bandwidth",
    "slow_close",
    "timeout",
    "reset_peer",
    "slicer",
    "limit_data",
];

impl Toxic {
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Latency(_) => "latency",
            Self::Bandwidth(_) => "bandwidth",
            Self::SlowClose(_) => "slow_close",
            Self::Timeout(_) => "timeout",
            Self::ResetPeer(_) => "reset_peer",
            Self::Slicer(_) => "slicer",
            Self::LimitData(_) => "limit_data",
        }
    }

    /// Builds a toxic from its type name and attribute object (missing attributes are 0, as in
    /// Toxiproxy; unknown ones are ignored). `Ok(None)` means the type is unknown.
    pub fn from_attributes(type_name: &str, attributes: &Value) -> Result<Option<Self>, String> {
        fn parse<T: serde::de::DeserializeOwned>(value: &Value) -> Result<T, String> {
            let object = if value.is_null() {
                Value::Object(serde_json::Map::new())
            } else {
                value.clone()
            };
            serde_json::from_value(object).map_err(|e| e.to_string())
        }
        Ok(Some(match type_name {
            "latency" => Self::Latency(parse(attributes)?),
            "bandwidth" => Self::Bandwidth(parse(attributes)?),
            "slow_close" => Self::SlowClose(parse(attributes)?),
            "timeout" => Self::Timeout(parse(attributes)?),
            "reset_peer" => Self::ResetPeer(parse(attributes)?),
            "slicer" => Self::Slicer(parse(attributes)?),
            "limit_data" => Self::LimitData(parse(attributes)?),
            _ => return Ok(None),
        }))
    }

    /// The attribute object as Toxiproxy writes it.
    pub fn attributes(&self) -> Value {
        let value = match self {
            Self::Latency(a) => serde_json::to_value(a),
            Self::Bandwidth(a) => serde_json::to_value(a),
            Self::SlowClose(a) => serde_json::to_value(a),
            Self::Timeout(a) => serde_json::to_value(a),
            Self::ResetPeer(a) => serde_json::to_value(a),
            Self::Slicer(a) => serde_json::to_value(a),
            Self::LimitData(a) => serde_json::to_value(a),
        };
        value.unwrap_or(Value::Null)
    }

    /// A copy with the given attributes overwritten and the others kept (Toxiproxy's update).
    pub fn with_patch(&self, patch: &Value) -> Result<Self, String> {
        let mut merged = self.attributes();
        if let (Value::Object(target), Value::Object(source)) = (&mut merged, patch) {
            for (key, value) in source {
                target.insert(key.clone(), value.clone());
            }
        } else if !patch.is_null() {
            return Err("attributes must be a JSON object".to_string());
        }
        Self::from_attributes(self.type_name(), &merged)
            .map(|toxic| toxic.unwrap_or_else(|| self.clone()))
    }
}

/// One toxic as a proxy holds it: name, stream, toxicity (0..1, the chance that a link gets
/// the toxic at all) and the toxic itself.
#[derive(Debug, Clone, PartialEq)]
pub struct ToxicSpec {
    pub name: String,
    pub stream: Stream,
    pub toxicity: f32,
    pub toxic: Toxic,
}

impl ToxicSpec {
    /// A toxic with Toxiproxy's default name `<type>_<stream>` and toxicity 1.
    pub fn new(stream: Stream, toxic: Toxic) -> Self {
        Self {
            name: format!("{}_{}", toxic.type_name(), stream.as_str()),
            stream,
            toxicity: 1.0,
            toxic,
        }
    }

    pub fn to_json(&self) -> ToxicJson {
        ToxicJson {
            attributes: self.toxic.attributes(),
            name: self.name.clone(),
            kind: self.toxic.type_name().to_string(),
            stream: self.stream.as_str().to_string(),
            toxicity: self.toxicity,
        }
    }

    /// Same type, stream, attributes and toxicity (names aside): no need to touch it.
    pub fn same_effect(&self, other: &Self) -> bool {
        self.stream == other.stream
            && self.toxic == other.toxic
            && (self.toxicity - other.toxicity).abs() < 1e-6
    }
}

/// How a connection is closed: a normal close (FIN) or a reset (RST).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum CloseMode {
    Close = 1,
    Reset = 2,
}

/// A toxic exactly as Toxiproxy's API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToxicJson {
    pub attributes: Value,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub stream: String,
    pub toxicity: f32,
}

impl ToxicJson {
    /// Back to a typed toxic; `None` if the type or stream is unknown or attributes are bad.
    pub fn to_spec(&self) -> Option<ToxicSpec> {
        let toxic = Toxic::from_attributes(&self.kind, &self.attributes).ok()??;
        Some(ToxicSpec {
            name: self.name.clone(),
            stream: Stream::parse(&self.stream)?,
            toxicity: self.toxicity,
            toxic,
        })
    }
}

/// What flows through a link: bytes, or the sender closing its side.
#[derive(Debug, Clone)]
pub(crate) enum Item {
    Data(Bytes),
    Eof,
}

/// An item and the instant it reaches (or leaves) a toxic.
#[derive(Debug, Clone)]
pub(crate) struct Timed {
    pub at: Instant,
    pub item: Item,
}

/// What toxics ask of the connection besides forwarding bytes.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    /// Close the connection once the bytes already released have been written.
    pub close_after_flush: bool,
    /// Close (or reset) the connection now.
    pub close_now: Option<CloseMode>,
}

impl Effects {
    pub(crate) fn close_now(&mut self, mode: CloseMode) {
        self.close_now = Some(self.close_now.map_or(mode, |m| m.max(mode)));
    }
}
