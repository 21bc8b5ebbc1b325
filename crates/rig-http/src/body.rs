//! Bounded request bodies and query strings.

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the request body is larger than {limit_bytes} bytes")]
    TooLarge { limit_bytes: usize },
    #[error("the request body could not be read: {0}")]
    Read(String),
}

/// Reads the whole body, refusing more than `limit_bytes` (nothing beyond the limit is buffered).
pub async fn read_body(body: Incoming, limit_bytes: usize) -> Result<Bytes, BodyError> {
    match Limited::new(body, limit_bytes).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) => {
            if err.is::<http_body_util::LengthLimitError>() {
                Err(BodyError::TooLarge { limit_bytes })
            } else {
                Err(BodyError::Read(err.to_string()))
            }
        }
    }
}

/// The first value of `name` in a query string (`a=1&b=2`), percent-decoded.
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(key) == name).then(|| percent_decode(value))
    })
}

/// Decodes one `application/x-www-form-urlencoded` component: `+` is a space, `%XX` a byte
/// (a malformed escape stays as written; bytes that are not UTF-8 become U+FFFD).
pub fn percent_decode(input: &str) -> String {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::query_param;

    /// Query parameters are found by name and percent-decoded; absent names give None.
    #[test]
    fn query_param_decodes() {
        let q = Some("idempotency_key=pay%3Aorder-1&x=2");
        assert_eq!(
            query_param(q, "idempotency_key").as_deref(),
            Some("pay:order-1")
        );
        assert_eq!(query_param(q, "x").as_deref(), Some("2"));
        assert_eq!(query_param(q, "y"), None);
        assert_eq!(query_param(None, "x"), None);
        assert_eq!(query_param(Some("k=%zz%4"), "k").as_deref(), Some("%zz%4"));
    }
}
