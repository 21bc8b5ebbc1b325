//! The named proxies and every operation of the HTTP API, with Toxiproxy's semantics and
//! error messages (`api.go`, `proxy_collection.go`, `toxic_collection.go` in Shopify/toxiproxy).
//!
//! One async lock serialises control-plane operations; the data path never takes it.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::Mutex;

use super::listener::Runner;
use super::{Shared, ToxicEntry};
use crate::toxics::{Stream, TOXIC_TYPES, Toxic, ToxicJson, ToxicSpec};

/// A proxy exactly as Toxiproxy's API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProxyJson {
    pub name: String,
    pub listen: String,
    pub upstream: String,
    pub enabled: bool,
    #[serde(default)]
    pub toxics: Vec<ToxicJson>,
}

/// Toxiproxy's error: `{"error": message, "status": code}` with that HTTP status.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiError {
    #[serde(rename = "error")]
    pub message: String,
    pub status: u16,
}

impl ApiError {
    fn new(message: impl Into<String>, status: u16) -> Self {
        Self {
            message: message.into(),
            status,
        }
    }
    fn bad_body(detail: impl std::fmt::Display) -> Self {
        Self::new(format!("bad request body: {detail}"), 400)
    }
    fn missing(field: &str) -> Self {
        Self::new(format!("missing required field: {field}"), 400)
    }
    fn proxy_not_found() -> Self {
        Self::new("proxy not found", 404)
    }
    fn toxic_not_found() -> Self {
        Self::new("toxic not found", 404)
    }
    fn internal(message: impl Into<String>) -> Self {
        Self::new(message, 500)
    }
}

/// A proxy definition as `POST /proxies`, `/populate` and `--config` files give it.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ProxyConfig {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub listen: String,
    #[serde(default)]
    pub upstream: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ProxyPatch {
    listen: Option<String>,
    upstream: Option<String>,
    enabled: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ToxicInput {
    #[serde(default)]
    name: String,
    #[serde(rename = "type", default)]
    kind: String,
    stream: Option<String>,
    toxicity: Option<f32>,
    #[serde(default)]
    attributes: Value,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ToxicPatch {
    toxicity: Option<f32>,
    #[serde(default)]
    attributes: Value,
}

#[derive(Debug)]
struct ProxyEntry {
    listen: String,
    upstream: String,
    enabled: bool,
    shared: Arc<Shared>,
    runner: Option<Runner>,
}

impl ProxyEntry {
    fn to_json(&self) -> ProxyJson {
        ProxyJson {
            name: self.shared.name.clone(),
            listen: self.listen.clone(),
            upstream: self.upstream.clone(),
            enabled: self.enabled,
            toxics: self
                .shared
                .toxics()
                .iter()
                .map(|e| e.spec.to_json())
                .collect(),
        }
    }

    async fn start(&mut self) -> Result<(), ApiError> {
        if self.enabled {
            return Ok(());
        }
        // An empty listen address means "any free port"; loopback keeps it off the network.
        let address = if self.listen.is_empty() {
            "127.0.0.1:0"
        } else {
            self.listen.as_str()
        };
        let listener = TcpListener::bind(address)
            .await
            .map_err(|e| ApiError::internal(format!("listen tcp {address}: {e}")))?;
        let bound = listener
            .local_addr()
            .map_err(|e| ApiError::internal(format!("listen tcp {address}: {e}")))?;
        self.listen = bound.to_string();
        self.runner = Some(Runner::start(
            listener,
            self.upstream.clone(),
            self.shared.clone(),
        ));
        self.enabled = true;
        Ok(())
    }

    async fn stop(&mut self) {
        if let Some(runner) = self.runner.take() {
            runner.stop().await;
        }
        self.enabled = false;
    }

    /// Would `listen`/`upstream` move the proxy (which restarts it and drops connections)?
    async fn differs(&self, listen: &str, upstream: &str) -> Result<bool, ApiError> {
        Ok(resolve(listen).await? != self.listen || upstream != self.upstream)
    }
}

async fn resolve(listen: &str) -> Result<String, ApiError> {
    if listen.is_empty() {
        return Ok("127.0.0.1:0".to_string());
    }
    let mut addresses = tokio::net::lookup_host(listen)
        .await
        .map_err(|e| ApiError::internal(format!("resolve {listen}: {e}")))?;
    addresses
        .next()
        .map(|a| a.to_string())
        .ok_or_else(|| ApiError::internal(format!("resolve {listen}: no address")))
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_body("EOF"));
    }
    serde_json::from_slice(body).map_err(ApiError::bad_body)
}

/// The toxic a `POST /proxies/{proxy}/toxics` body asks for: stream, name (default
/// `<type>_<stream>`), type and attributes checked, as Toxiproxy does before it looks for a
/// toxic of the same name.
pub(crate) fn toxic_spec(input: ToxicInput) -> Result<ToxicSpec, ApiError> {
    let stream_text = input
        .stream
        .unwrap_or_else(|| "downstream".to_string())
        .to_lowercase();
    let stream = Stream::parse(&stream_text).ok_or_else(|| {
        ApiError::new(
            "stream was invalid, can be either upstream or downstream",
            400,
        )
    })?;
    let name = if input.name.is_empty() {
        format!("{}_{}", input.kind, stream_text)
    } else {
        input.name
    };
    if !TOXIC_TYPES.contains(&input.kind.as_str()) {
        return Err(ApiError::new("invalid toxic type", 400));
    }
    let toxic = Toxic::from_attributes(&input.kind, &input.attributes)
        .map_err(ApiError::bad_body)?
        .ok_or_else(|| ApiError::new("invalid toxic type", 400))?;
    Ok(ToxicSpec {
        name,
        stream,
        toxicity: toxicity(input.toxicity)?.unwrap_or(1.0),
        toxic,
    })
}

/// A toxic with a `POST /proxies/{proxy}/toxics/{toxic}` body applied: attributes merged
/// and checked, toxicity replaced when given.
pub(crate) fn patched(mut spec: ToxicSpec, patch: ToxicPatch) -> Result<ToxicSpec, ApiError> {
    spec.toxic = spec
        .toxic
        .with_patch(&patch.attributes)
        .map_err(ApiError::bad_body)?;
    spec.toxicity = toxicity(patch.toxicity)?.unwrap_or(spec.toxicity);
    Ok(spec)
}

/// A toxicity as given, refusing a number too large for a 32-bit float (Toxiproxy's Go
/// decoder refuses it too; taken as infinity it would print as `null`, found by fuzzing).
fn toxicity(given: Option<f32>) -> Result<Option<f32>, ApiError> {
    match given {
        Some(t) if !t.is_finite() => Err(ApiError::bad_body(
            "json: cannot unmarshal number into Go struct field Toxic.toxicity of type float32",
        )),
        other => Ok(other),
    }
}

/// Every proxy of one server.
#[derive(Debug)]
pub(crate) struct Collection {
    seed: u64,
    proxies: Mutex<BTreeMap<String, ProxyEntry>>,
}

impl Collection {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            seed,
            proxies: Mutex::new(BTreeMap::new()),
        }
    }

    pub(crate) async fn list(&self) -> BTreeMap<String, ProxyJson> {
        let proxies = self.proxies.lock().await;
        proxies
            .iter()
            .map(|(name, p)| (name.clone(), p.to_json()))
            .collect()
    }

    pub(crate) async fn create(&self, body: &[u8]) -> Result<ProxyJson, ApiError> {
        let input: ProxyConfig = decode(body)?;
        if input.name.is_empty() {
            return Err(ApiError::missing("name"));
        }
        if input.upstream.is_empty() {
            return Err(ApiError::missing("upstream"));
        }
        let mut proxies = self.proxies.lock().await;
        if proxies.contains_key(&input.name) {
            return Err(ApiError::new("proxy already exists", 409));
        }
        let mut entry = self.new_entry(&input);
        if input.enabled.unwrap_or(true) {
            entry.start().await?;
        }
        let json = entry.to_json();
        proxies.insert(input.name, entry);
        Ok(json)
    }

    /// Creates or replaces many proxies; one that exists with the same listen address and
    /// upstream is kept as it is (toxics and connections included).
    pub(crate) async fn populate(&self, body: &[u8]) -> (Vec<ProxyJson>, Option<ApiError>) {
        let inputs: Vec<ProxyConfig> = match decode(body) {
            Ok(inputs) => inputs,
            Err(err) => return (Vec::new(), Some(err)),
        };
        for (i, input) in inputs.iter().enumerate() {
            if input.name.is_empty() {
                return (
                    Vec::new(),
                    Some(ApiError::missing(&format!("name at proxy {}", i + 1))),
                );
            }
            if input.upstream.is_empty() {
                let field = format!("upstream at proxy {}", i + 1);
                return (Vec::new(), Some(ApiError::missing(&field)));
            }
        }
        let mut proxies = self.proxies.lock().await;
        let mut done = Vec::new();
        for input in inputs {
            if let Some(existing) = proxies.get_mut(&input.name) {
                match existing.differs(&input.listen, &input.upstream).await {
                    Ok(false) => {
                        done.push(existing.to_json());
                        continue;
                    }
                    Ok(true) => existing.stop().await,
                    Err(err) => return (done, Some(err)),
                }
            }
            let mut entry = self.new_entry(&input);
            if input.enabled.unwrap_or(true)
                && let Err(err) = entry.start().await
            {
                return (done, Some(err));
            }
            done.push(entry.to_json());
            proxies.insert(input.name, entry);
        }
        (done, None)
    }

    pub(crate) async fn get(&self, name: &str) -> Result<ProxyJson, ApiError> {
        let proxies = self.proxies.lock().await;
        proxies
            .get(name)
            .map(ProxyEntry::to_json)
            .ok_or_else(ApiError::proxy_not_found)
    }

    pub(crate) async fn update(&self, name: &str, body: &[u8]) -> Result<ProxyJson, ApiError> {
        let mut proxies = self.proxies.lock().await;
        let entry = proxies
            .get_mut(name)
            .ok_or_else(ApiError::proxy_not_found)?;
        let patch: ProxyPatch = decode(body)?;
        let listen = patch.listen.unwrap_or_else(|| entry.listen.clone());
        let upstream = patch.upstream.unwrap_or_else(|| entry.upstream.clone());
        let enabled = patch.enabled.unwrap_or(entry.enabled);
        if entry.differs(&listen, &upstream).await? {
            entry.stop().await;
            entry.listen = listen;
            entry.upstream = upstream;
        }
        if enabled && !entry.enabled {
            entry.start().await?;
        } else if !enabled && entry.enabled {
            entry.stop().await;
        }
        Ok(entry.to_json())
    }

    pub(crate) async fn delete(&self, name: &str) -> Result<(), ApiError> {
        let mut proxies = self.proxies.lock().await;
        let mut entry = proxies.remove(name).ok_or_else(ApiError::proxy_not_found)?;
        entry.stop().await;
        Ok(())
    }

    pub(crate) async fn toxics(&self, name: &str) -> Result<Vec<ToxicJson>, ApiError> {
        Ok(self.get(name).await?.toxics)
    }

    pub(crate) async fn add_toxic(&self, name: &str, body: &[u8]) -> Result<ToxicJson, ApiError> {
        let proxies = self.proxies.lock().await;
        let entry = proxies.get(name).ok_or_else(ApiError::proxy_not_found)?;
        let spec = toxic_spec(decode(body)?)?;
        if entry
            .shared
            .toxics()
            .iter()
            .any(|e| e.spec.name == spec.name)
        {
            return Err(ApiError::new("toxic already exists", 409));
        }
        let version = entry.shared.next_version();
        let json = spec.to_json();
        entry
            .shared
            .update_toxics(|toxics| toxics.push(ToxicEntry { spec, version }));
        Ok(json)
    }

    pub(crate) async fn get_toxic(&self, name: &str, toxic: &str) -> Result<ToxicJson, ApiError> {
        self.toxics(name)
            .await?
            .into_iter()
            .find(|t| t.name == toxic)
            .ok_or_else(ApiError::toxic_not_found)
    }

    pub(crate) async fn update_toxic(
        &self,
        name: &str,
        toxic: &str,
        body: &[u8],
    ) -> Result<ToxicJson, ApiError> {
        let proxies = self.proxies.lock().await;
        let entry = proxies.get(name).ok_or_else(ApiError::proxy_not_found)?;
        let current = entry
            .shared
            .toxics()
            .iter()
            .find(|e| e.spec.name == toxic)
            .cloned()
            .ok_or_else(ApiError::toxic_not_found)?;
        let spec = patched(current.spec, decode(body)?)?;
        let version = entry.shared.next_version();
        let json = spec.to_json();
        entry.shared.update_toxics(|toxics| {
            if let Some(slot) = toxics.iter_mut().find(|e| e.spec.name == toxic) {
                *slot = ToxicEntry { spec, version };
            }
        });
        Ok(json)
    }

    pub(crate) async fn remove_toxic(&self, name: &str, toxic: &str) -> Result<(), ApiError> {
        let proxies = self.proxies.lock().await;
        let entry = proxies.get(name).ok_or_else(ApiError::proxy_not_found)?;
        let removed = entry.shared.update_toxics(|toxics| {
            let before = toxics.len();
            toxics.retain(|e| e.spec.name != toxic);
            before != toxics.len()
        });
        if removed {
            Ok(())
        } else {
            Err(ApiError::toxic_not_found())
        }
    }

    /// Enables every proxy and removes every toxic.
    pub(crate) async fn reset(&self) -> Result<(), ApiError> {
        let mut proxies = self.proxies.lock().await;
        for entry in proxies.values_mut() {
            entry.start().await?;
            entry.shared.update_toxics(Vec::clear);
        }
        Ok(())
    }

    /// Stops every proxy (listeners and connections); used when the server shuts down.
    pub(crate) async fn shutdown(&self) {
        let mut proxies = self.proxies.lock().await;
        for entry in proxies.values_mut() {
            entry.stop().await;
        }
    }

    fn new_entry(&self, input: &ProxyConfig) -> ProxyEntry {
        ProxyEntry {
            listen: input.listen.clone(),
            upstream: input.upstream.clone(),
            enabled: false,
            shared: Shared::new(&input.name, self.seed),
            runner: None,
        }
    }
}
