//! Entry points for the fuzz targets (`fuzz/`) and their regression tests: each takes
//! untrusted bytes, and must return without panicking, hanging or allocating without bound
//! whatever the bytes are.

use serde_json::Value;

use crate::api::percent_decode;
use crate::proxy::collection::{
    ProxyConfig, ProxyPatch, ToxicInput, ToxicPatch, decode, patched, toxic_spec,
};
use crate::toxics::{Stream, TOXIC_TYPES, Toxic, ToxicSpec};

/// The Toxiproxy-compatible API's request parsing: the first line is a request path, the
/// rest a body, read as every body the API takes (a proxy, `/populate`'s list, a proxy
/// update, a toxic, a toxic update applied to a toxic of every type). Every toxic accepted
/// must print as JSON that reads back as the same toxic.
pub fn toxiproxy_api(data: &[u8]) {
    let (path, body) = match data.iter().position(|&b| b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    if let Ok(path) = std::str::from_utf8(path)
        && let Some(decoded) = percent_decode(path)
    {
        assert!(
            decoded.len() <= path.len(),
            "decoding never lengthens a path"
        );
    }
    let _ = decode::<ProxyConfig>(body);
    let _ = decode::<Vec<ProxyConfig>>(body);
    let _ = decode::<ProxyPatch>(body);
    if let Ok(input) = decode::<ToxicInput>(body)
        && let Ok(spec) = toxic_spec(input)
    {
        prints_and_reads_back(&spec);
    }
    if let Ok(patch) = decode::<ToxicPatch>(body) {
        for kind in TOXIC_TYPES {
            let toxic = Toxic::from_attributes(kind, &Value::Null)
                .expect("defaults are valid")
                .expect("a listed type is known");
            let spec = ToxicSpec {
                name: format!("{kind}_downstream"),
                stream: Stream::Downstream,
                toxicity: 1.0,
                toxic,
            };
            let patch = ToxicPatch::clone(&patch);
            if let Ok(spec) = patched(spec, patch) {
                prints_and_reads_back(&spec);
            }
        }
    }
}

/// An accepted toxic prints as JSON whose toxicity is a number and whose attributes read
/// back as the same toxic.
fn prints_and_reads_back(spec: &ToxicSpec) {
    let json = spec.to_json();
    let text = serde_json::to_string(&json).expect("a toxic prints as JSON");
    let back: Value = serde_json::from_str(&text).expect("what we print reads back");
    assert!(
        back["toxicity"].is_number(),
        "toxicity prints as a number: {text}"
    );
    let again = Toxic::from_attributes(&json.kind, &back["attributes"])
        .expect("printed attributes are accepted")
        .expect("a printed type is known");
    assert_eq!(again, spec.toxic, "a toxic reads back as itself: {text}");
}
