//! The embedded server's HTTP API answers with Toxiproxy 2.x's paths, JSON shapes, defaults
//! and status codes.

mod common;

use std::io::ErrorKind;
use std::time::Duration;

use bytes::Bytes;
use common::{Toxi, echo_server};
use rig_http::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::net::TcpStream;

/// Proxy life cycle: create (201, real port), duplicate (409), show, list, update, delete.
#[tokio::test]
async fn proxies_crud() {
    let toxi = Toxi::start(1).await;
    let upstream = echo_server().await;
    let (status, body) = toxi.call(Method::GET, "/version", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["version"].as_str().unwrap().starts_with("2."));
    let create = json!({"name": "p", "listen": "127.0.0.1:0", "upstream": upstream.to_string()});
    let (status, body) = toxi
        .call(Method::POST, "/proxies", Some(create.clone()))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(body["name"], "p");
    assert_eq!(body["enabled"], true);
    assert_eq!(body["toxics"], json!([]));
    assert_ne!(
        body["listen"], "127.0.0.1:0",
        "listen must show the bound port"
    );
    let (status, body) = toxi.call(Method::POST, "/proxies", Some(create)).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        body,
        json!({"error": "proxy already exists", "status": 409})
    );
    let (status, body) = toxi
        .call(
            Method::POST,
            "/proxies",
            Some(json!({"name": "q", "listen": "127.0.0.1:0"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "missing required field: upstream");
    let (status, body) = toxi.call(Method::GET, "/proxies", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["p"]["upstream"], upstream.to_string());
    let (status, body) = toxi
        .call(Method::POST, "/proxies/p", Some(json!({"enabled": false})))
        .await;
    assert_eq!(status, StatusCode::OK, "POST update is still accepted");
    assert_eq!(body["enabled"], false);
    let (status, _) = toxi.call(Method::DELETE, "/proxies/p", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = toxi.call(Method::GET, "/proxies/p", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, json!({"error": "proxy not found", "status": 404}));
}

/// Toxics: defaults (name, stream, toxicity), 409/400 errors, partial update, delete, list.
#[tokio::test]
async fn toxics_crud() {
    let toxi = Toxi::start(1).await;
    toxi.proxy("p", echo_server().await).await;
    let (status, body) = toxi
        .call(
            Method::POST,
            "/proxies/p/toxics",
            Some(json!({"type": "latency", "attributes": {"latency": 50, "jitter": 5}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"attributes": {"latency": 50, "jitter": 5}, "name": "latency_downstream",
               "type": "latency", "stream": "downstream", "toxicity": 1.0})
    );
    let (status, body) = toxi
        .call(
            Method::POST,
            "/proxies/p/toxics",
            Some(json!({"type": "latency"})),
        )
        .await;
    assert_eq!(
        (status, body["error"].clone()),
        (StatusCode::CONFLICT, json!("toxic already exists"))
    );
    // A toxicity too large for Toxiproxy's 32-bit float is refused, added or updated
    // (taken as infinity it printed as `null`; found by fuzzing).
    for (path, bad) in [
        (
            "/proxies/p/toxics",
            json!({"type": "timeout", "toxicity": 1e39}),
        ),
        (
            "/proxies/p/toxics/latency_downstream",
            json!({"toxicity": -1e39}),
        ),
    ] {
        let (status, body) = toxi.call(Method::POST, path, Some(bad)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
    }
    let (status, body) = toxi
        .call(
            Method::POST,
            "/proxies/p/toxics",
            Some(json!({"type": "nope"})),
        )
        .await;
    assert_eq!(
        (status, body["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("invalid toxic type"))
    );
    let (status, body) = toxi
        .call(
            Method::POST,
            "/proxies/p/toxics",
            Some(json!({"type": "timeout", "stream": "sideways"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["error"],
        "stream was invalid, can be either upstream or downstream"
    );
    let (status, body) = toxi
        .call(Method::POST, "/proxies/p/toxics", Some(json!({"name": "cut", "type": "limit_data", "stream": "upstream", "toxicity": 0.5, "attributes": {"bytes": 9}})))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["toxicity"], 0.5);
    let (status, body) = toxi
        .call(
            Method::PATCH,
            "/proxies/p/toxics/latency_downstream",
            Some(json!({"attributes": {"latency": 70}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["attributes"],
        json!({"latency": 70, "jitter": 5}),
        "unset attributes are kept"
    );
    let (status, body) = toxi.call(Method::GET, "/proxies/p/toxics", None).await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<_> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].clone())
        .collect();
    assert_eq!(
        names,
        vec![json!("cut"), json!("latency_downstream")],
        "upstream toxics list first"
    );
    let (status, _) = toxi
        .call(Method::DELETE, "/proxies/p/toxics/cut", None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = toxi.call(Method::GET, "/proxies/p/toxics/cut", None).await;
    assert_eq!(
        (status, body["error"].clone()),
        (StatusCode::NOT_FOUND, json!("toxic not found"))
    );
    let (status, body) = toxi
        .call(Method::GET, "/proxies/p/toxics/latency_downstream", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["attributes"]["latency"], 70);
}

/// `/populate` creates, keeps an unchanged proxy (with its toxics), and answers
/// `{"proxies": [...]}`; `/reset` re-enables proxies and removes all toxics.
#[tokio::test]
async fn populate_and_reset() {
    let toxi = Toxi::start(1).await;
    let upstream = echo_server().await;
    let listen = toxi.proxy("p", upstream).await;
    toxi.add_toxic(
        "p",
        json!({"type": "timeout", "attributes": {"timeout": 0}}),
    )
    .await;
    let same = json!([{"name": "p", "listen": listen.to_string(), "upstream": upstream.to_string()},
                      {"name": "r", "listen": "127.0.0.1:0", "upstream": upstream.to_string(), "enabled": false}]);
    let (status, body) = toxi.call(Method::POST, "/populate", Some(same)).await;
    assert_eq!(status, StatusCode::CREATED);
    let proxies = body["proxies"].as_array().unwrap();
    assert_eq!(proxies.len(), 2);
    assert_eq!(
        proxies[0]["toxics"].as_array().unwrap().len(),
        1,
        "an unchanged proxy is kept"
    );
    assert_eq!(proxies[1]["enabled"], false);
    let (status, body) = toxi
        .call(Method::POST, "/populate", Some(json!([{"name": "x"}])))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "missing required field: upstream at proxy 1");
    let (status, _) = toxi.call(Method::POST, "/reset", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, body) = toxi.call(Method::GET, "/proxies", None).await;
    for name in ["p", "r"] {
        assert_eq!(body[name]["enabled"], true, "{name}");
        assert_eq!(body[name]["toxics"], json!([]), "{name}");
    }
    let r_listen = body["r"]["listen"].as_str().unwrap().to_string();
    assert!(TcpStream::connect(&r_listen).await.is_ok());
    toxi.call(Method::DELETE, "/proxies/r", None).await;
    let gone = TcpStream::connect(&r_listen).await;
    assert_eq!(gone.unwrap_err().kind(), ErrorKind::ConnectionRefused);
}

/// Browsers are refused, unknown paths are 404, wrong methods 405, bad bodies 400, and
/// bodies over the size or depth bound 400.
#[tokio::test]
async fn guards_and_errors() {
    let toxi = Toxi::start(1).await;
    let browser = toxi
        .http
        .send(
            Method::GET,
            &format!("{}/proxies", toxi.url()),
            &[("user-agent", "Mozilla/5.0")],
            None,
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(browser.status, StatusCode::FORBIDDEN);
    let (status, _) = toxi.call(Method::GET, "/nowhere", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = toxi.call(Method::DELETE, "/proxies", None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let bad = toxi
        .http
        .send(
            Method::POST,
            &format!("{}/proxies", toxi.url()),
            &[],
            Some(Bytes::from_static(b"{nope")),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&bad.body).contains("bad request body"));
    // The bounds: a body over 1 MiB is refused unread, JSON nested deeper than the parser's
    // depth limit (128) is refused without a stack overflow, and the server goes on.
    toxi.proxy("p", echo_server().await).await;
    let too_big = format!("{{\"name\":\"{}\"}}", "x".repeat(1024 * 1024));
    let too_deep = format!(
        "{{\"type\":\"latency\",\"attributes\":{}{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    for (path, body, says) in [
        ("/populate", too_big, "larger than 1048576 bytes"),
        ("/proxies/p/toxics", too_deep, "recursion limit exceeded"),
    ] {
        let refused = toxi
            .http
            .send(
                Method::POST,
                &format!("{}{path}", toxi.url()),
                &[],
                Some(Bytes::from(body)),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        assert_eq!(refused.status, StatusCode::BAD_REQUEST);
        let text = String::from_utf8_lossy(&refused.body);
        assert!(text.contains(says), "{says}: {text}");
    }
    let (status, _) = toxi.call(Method::GET, "/version", None).await;
    assert_eq!(status, StatusCode::OK, "the server goes on");
}

/// Where a differential against real Toxiproxy 2.12 found the rig answering differently, it
/// now answers the same: names that need percent-encoding (a space, `{}`, non-ASCII) work
/// on every route and a malformed escape is 400; errors are Go's `http.Error` text (JSON,
/// newline, `text/plain; charset=utf-8`); `/populate` says `"proxies": null` for an empty
/// list and on an error, and prints a toxicity of 0.3 as `0.3`.
#[tokio::test]
async fn matches_real_toxiproxy_where_a_differential_differed() {
    let toxi = Toxi::start(1).await;
    let upstream = echo_server().await;
    for (name, path) in [
        ("my proxy", "my%20proxy"),
        ("{x}", "%7Bx%7D"),
        ("prøxy", "pr%C3%B8xy"),
    ] {
        let create =
            json!({"name": name, "listen": "127.0.0.1:0", "upstream": upstream.to_string()});
        let (status, _) = toxi.call(Method::POST, "/proxies", Some(create)).await;
        assert_eq!(status, StatusCode::CREATED, "{name}");
        let (status, body) = toxi
            .call(Method::GET, &format!("/proxies/{path}"), None)
            .await;
        assert_eq!(
            (status, body["name"].clone()),
            (StatusCode::OK, json!(name))
        );
        let toxic = json!({"type": "latency", "attributes": {"latency": 5}});
        let (status, _) = toxi
            .call(
                Method::POST,
                &format!("/proxies/{path}/toxics"),
                Some(toxic),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{name}");
        let (status, _) = toxi
            .call(Method::DELETE, &format!("/proxies/{path}"), None)
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{name}");
    }
    for bad in ["/proxies/a%b", "/proxies/a%zz", "/proxies/a%+f"] {
        let (status, _) = toxi.call(Method::GET, bad, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    }
    // An error, as Go's http.Error writes it.
    let raw = toxi
        .http
        .send(
            Method::GET,
            &format!("{}/proxies/nope", toxi.url()),
            &[],
            None,
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(raw.status, StatusCode::NOT_FOUND);
    assert_eq!(
        raw.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(raw.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(
        std::str::from_utf8(&raw.body).unwrap(),
        "{\"error\":\"proxy not found\",\"status\":404}\n"
    );
    // /populate: null for nothing and on an error.
    let (status, body) = toxi.call(Method::POST, "/populate", Some(json!([]))).await;
    assert_eq!(
        (status, body),
        (StatusCode::CREATED, json!({"proxies": null}))
    );
    let (status, body) = toxi
        .call(Method::POST, "/populate", Some(json!([{"name": "x"}])))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["proxies"], Value::Null);
    assert_eq!(body["status"], 400);
    // A kept proxy's toxicity prints as it was given.
    let listen = toxi.proxy("p", upstream).await;
    toxi.add_toxic(
        "p",
        json!({"type": "latency", "toxicity": 0.3, "attributes": {"latency": 1}}),
    )
    .await;
    let same =
        json!([{"name": "p", "listen": listen.to_string(), "upstream": upstream.to_string()}]);
    let raw = toxi
        .http
        .send(
            Method::POST,
            &format!("{}/populate", toxi.url()),
            &[],
            Some(Bytes::from(serde_json::to_vec(&same).unwrap())),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    let text = std::str::from_utf8(&raw.body).unwrap();
    assert!(
        text.contains("\"toxicity\":0.3,") || text.contains("\"toxicity\":0.3}"),
        "{text}"
    );
}
