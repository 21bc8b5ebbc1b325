//! Driving a Toxiproxy (the real one or the embedded server) through its HTTP API with the
//! `toxiproxy_rust` client.
//!
//! That client is blocking (reqwest 0.11) and panics on transport errors and unresolvable
//! hosts, so every call runs on a blocking thread with a client made and dropped there: a
//! panic becomes an error, never a crash of the run. It also ignores HTTP status codes, so
//! every change is confirmed by reading the state back. It cannot name a toxic, delete a
//! single one or create `reset_peer`; toxics are added and removed over plain HTTP, with
//! their status recorded.
//!
//! Every toxic the rig adds is named `rig.<run>.<type>_<stream>` ([`TOXIC_PREFIX`], the run's
//! marker): after a crash of the rig, the next run (or `rig chaos --heal`) can tell its
//! leftovers from anyone else's toxics.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rig_http::{HttpClient, Method};
use toxiproxy_rust::client::Client;
use toxiproxy_rust::proxy::ProxyPack;

use crate::ChaosError;
use crate::desired::ProxyDesired;
use crate::journal::Call;
use crate::proxy::collection::ProxyConfig;
use crate::toxics::{ToxicJson, ToxicSpec};

/// What every toxic the rig adds is named with first.
pub const TOXIC_PREFIX: &str = "rig.";

/// A run's marker for toxic names: `rig.<run>.`, the run's name with anything but letters,
/// digits, `-` and `_` replaced by `-`.
pub fn run_marker(run: &str) -> String {
    let clean: String = run
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("{TOXIC_PREFIX}{clean}.")
}

/// Faults an earlier run left on a Toxiproxy: rig-made toxics of another run, by proxy.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Leftovers {
    pub toxics: Vec<(String, String)>,
    /// Proxies a timeline uses that were found disabled.
    pub disabled: Vec<String>,
}

impl Leftovers {
    pub fn is_empty(&self) -> bool {
        self.toxics.is_empty() && self.disabled.is_empty()
    }

    /// One line for the terminal and the journal.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self
            .toxics
            .iter()
            .map(|(proxy, toxic)| format!("toxic {toxic} on {proxy}"))
            .collect();
        parts.extend(self.disabled.iter().map(|p| format!("proxy {p} disabled")));
        parts.join(", ")
    }
}

/// How long one plain-HTTP call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts of the final reset before giving up.
const HEAL_ATTEMPTS: u32 = 3;

/// A proxy as read back from Toxiproxy.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyState {
    pub name: String,
    pub listen: String,
    pub upstream: String,
    pub enabled: bool,
    pub toxics: Vec<ToxicSpec>,
}

impl ProxyState {
    fn from_pack(pack: ProxyPack) -> Result<Self, String> {
        let toxics = pack
            .toxics
            .into_iter()
            .map(|t| {
                let attributes: serde_json::Map<String, serde_json::Value> = t
                    .attributes
                    .into_iter()
                    .map(|(k, v)| (k, serde_json::Value::from(v)))
                    .collect();
                let json = ToxicJson {
                    attributes: serde_json::Value::Object(attributes),
                    name: t.name,
                    kind: t.r#type,
                    stream: t.stream,
                    toxicity: t.toxicity,
                };
                json.to_spec()
                    .ok_or_else(|| format!("toxic {} has an unknown type or stream", json.name))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            name: pack.name,
            listen: pack.listen,
            upstream: pack.upstream,
            enabled: pack.enabled,
            toxics,
        })
    }

    /// True when the proxy is enabled and has no toxic.
    pub fn is_clean(&self) -> bool {
        self.enabled && self.toxics.is_empty()
    }

    fn matches(&self, want: &ProxyDesired) -> bool {
        self.enabled == want.enabled
            && self.toxics.len() == want.toxics.len()
            && want.toxics.iter().all(|w| {
                self.toxics
                    .iter()
                    .any(|t| t.name == w.name && t.same_effect(w))
            })
    }
}

/// One `toxiproxy_rust` client, made on first use and reused: making one costs tens of
/// milliseconds (a thread, a runtime, TLS set-up). It is only ever touched on blocking
/// threads, and dropped on a thread of its own, because dropping it on an async worker panics.
#[derive(Default)]
struct ClientSlot {
    client: Mutex<Option<Client>>,
}

impl std::fmt::Debug for ClientSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientSlot")
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let client = self
            .client
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(client) = client {
            let _ = std::thread::spawn(move || drop(client));
        }
    }
}

/// A Toxiproxy API endpoint.
#[derive(Debug, Clone)]
pub struct ToxiproxyControl {
    url: String,
    /// `rig.<run>.`: the start of every toxic name this run adds.
    marker: String,
    host_port: String,
    http: HttpClient,
    slot: Arc<ClientSlot>,
}

impl ToxiproxyControl {
    /// `url` is `http://HOST:PORT` (or just `HOST:PORT`).
    pub fn new(url: &str) -> Result<Self, ChaosError> {
        let bad = |reason: &str| ChaosError::BadUrl {
            what: "Toxiproxy URL",
            url: url.to_string(),
            reason: format!("{reason}; write e.g. http://127.0.0.1:8474"),
        };
        let trimmed = url.trim_end_matches('/');
        let host_port = match trimmed.split_once("://") {
            Some(("http", rest)) => rest,
            Some((_, _)) => return Err(bad("only http:// is supported")),
            None => trimmed,
        };
        let (host, port) = host_port
            .rsplit_once(':')
            .ok_or_else(|| bad("it has no port"))?;
        if host.is_empty() || host_port.contains('/') {
            return Err(bad("it must be HOST:PORT with no path"));
        }
        port.parse::<u16>()
            .map_err(|_| bad("the port is not a number"))?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        Ok(Self {
            marker: run_marker(&format!("{now}-{}", std::process::id())),
            url: format!("http://{host_port}"),
            host_port: host_port.to_string(),
            http: HttpClient::new(Duration::from_secs(2), 2),
            slot: Arc::new(ClientSlot::default()),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Names this run's toxics after `run` (by default, the start time and process id).
    pub fn for_run(mut self, run: &str) -> Self {
        self.marker = run_marker(run);
        self
    }

    /// This run's marker (`rig.<run>.`).
    pub fn marker(&self) -> &str {
        &self.marker
    }

    /// `spec` as this run names it on the Toxiproxy.
    fn ours(&self, spec: &ToxicSpec) -> ToxicSpec {
        let mut named = spec.clone();
        named.name = format!("{}{}", self.marker, spec.name);
        named
    }

    /// Rig-made toxics of other runs on the proxies `used`, and which of them are disabled.
    pub async fn leftovers(
        &self,
        used: &[String],
        log: &mut Vec<Call>,
    ) -> Result<Leftovers, String> {
        self.scan(used, false, log).await
    }

    /// Every rig-made toxic on any proxy (this run's too), and every disabled proxy.
    pub async fn rig_made(&self, log: &mut Vec<Call>) -> Result<Leftovers, String> {
        let all: Vec<String> = self.proxies(log).await?.into_keys().collect();
        self.scan(&all, true, log).await
    }

    async fn scan(
        &self,
        used: &[String],
        own_too: bool,
        log: &mut Vec<Call>,
    ) -> Result<Leftovers, String> {
        let proxies = self.proxies(log).await?;
        let mut found = Leftovers::default();
        // Only the proxies asked about: another timeline may be running on the others.
        for (name, proxy) in proxies.iter().filter(|(name, _)| used.contains(*name)) {
            for toxic in &proxy.toxics {
                let ours = toxic.name.starts_with(&self.marker);
                if toxic.name.starts_with(TOXIC_PREFIX) && (own_too || !ours) {
                    found.toxics.push((name.clone(), toxic.name.clone()));
                }
            }
            if !proxy.enabled && used.contains(name) {
                found.disabled.push(name.clone());
            }
        }
        Ok(found)
    }

    /// Removes `leftovers` (and enables the disabled proxies), then reads back.
    pub async fn clear(&self, leftovers: &Leftovers, log: &mut Vec<Call>) -> Result<(), String> {
        for (proxy, toxic) in &leftovers.toxics {
            self.remove_toxic(proxy, toxic, log).await?;
        }
        for proxy in &leftovers.disabled {
            self.set_enabled(proxy, true, log).await?;
        }
        // Read back the proxies touched: every toxic asked to go is gone, every proxy asked
        // to be enabled is (toxics added meanwhile are not ours to judge).
        let touched: Vec<String> = leftovers
            .toxics
            .iter()
            .map(|(proxy, _)| proxy.clone())
            .chain(leftovers.disabled.iter().cloned())
            .collect();
        let now = self.scan(&touched, true, log).await?;
        let still: Vec<String> = now
            .toxics
            .iter()
            .filter(|t| leftovers.toxics.contains(t))
            .map(|(proxy, toxic)| format!("toxic {toxic} on {proxy}"))
            .chain(now.disabled.iter().map(|p| format!("proxy {p} disabled")))
            .collect();
        if still.is_empty() {
            Ok(())
        } else {
            Err(format!("still there after removal: {}", still.join(", ")))
        }
    }

    fn call(&self, op: String, via: &str, status: Option<u16>, error: Option<String>) -> Call {
        Call {
            target: "toxiproxy".to_string(),
            op,
            via: via.to_string(),
            status,
            error,
        }
    }

    /// Runs `work` with the `toxiproxy_rust` client on a blocking thread.
    async fn blocking<T: Send + 'static>(
        &self,
        op: String,
        log: &mut Vec<Call>,
        work: impl FnOnce(&Client) -> Result<T, String> + Send + 'static,
    ) -> Result<T, String> {
        let host_port = self.host_port.clone();
        let slot = self.slot.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let client = {
                let mut cached = slot.client.lock().unwrap_or_else(PoisonError::into_inner);
                // Client::new panics if the host does not resolve: that panic is caught below.
                cached
                    .get_or_insert_with(|| Client::new(host_port.as_str()))
                    .clone()
            };
            work(&client)
        })
        .await;
        if joined.as_ref().is_err() {
            // The client panicked while holding its own lock, which stays poisoned: start
            // afresh next time.
            let stale = self
                .slot
                .client
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(stale) = stale {
                let _ = std::thread::spawn(move || drop(stale));
            }
        }
        let result = match joined {
            Ok(result) => result,
            Err(err) if err.is_panic() => {
                let panic = err.into_panic();
                let text = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "unknown panic".to_string());
                Err(format!("the toxiproxy_rust client panicked: {text}"))
            }
            Err(err) => Err(format!("the toxiproxy_rust call was cancelled: {err}")),
        };
        log.push(self.call(op, "toxiproxy_rust", None, result.as_ref().err().cloned()));
        result.map_err(|e| format!("{}: {e}", self.url))
    }

    async fn http(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        op: String,
        log: &mut Vec<Call>,
    ) -> Result<u16, String> {
        let url = format!("{}{path}", self.url);
        let sent = self
            .http
            .send(method, &url, &[], body.map(Into::into), CALL_TIMEOUT)
            .await;
        match sent {
            Ok(response) => {
                let status = response.status.as_u16();
                let error = (!response.status.is_success())
                    .then(|| String::from_utf8_lossy(&response.body).trim().to_string());
                log.push(self.call(op, "http", Some(status), error.clone()));
                match error {
                    None => Ok(status),
                    Some(text) => Err(format!("{url} answered {status}: {text}")),
                }
            }
            Err(err) => {
                log.push(self.call(op, "http", None, Some(err.to_string())));
                Err(err.to_string())
            }
        }
    }

    /// The server's version string (the body of `/version`).
    pub async fn version(&self, log: &mut Vec<Call>) -> Result<String, String> {
        self.blocking("version".to_string(), log, |c| c.version())
            .await
    }

    /// Every proxy with its toxics.
    pub async fn proxies(
        &self,
        log: &mut Vec<Call>,
    ) -> Result<BTreeMap<String, ProxyState>, String> {
        let packs = self
            .blocking("list_proxies".to_string(), log, |c| {
                c.all().map(|proxies| {
                    proxies
                        .into_iter()
                        .map(|(name, proxy)| (name, proxy.proxy_pack))
                        .collect::<HashMap<_, _>>()
                })
            })
            .await?;
        packs
            .into_iter()
            .map(|(name, pack)| ProxyState::from_pack(pack).map(|p| (name, p)))
            .collect()
    }

    /// Creates or replaces proxies (Toxiproxy's `/populate`).
    pub async fn populate(
        &self,
        proxies: &[ProxyConfig],
        log: &mut Vec<Call>,
    ) -> Result<Vec<ProxyState>, String> {
        let packs: Vec<ProxyPack> = proxies
            .iter()
            .map(|p| {
                let mut pack = ProxyPack::new(p.name.clone(), p.listen.clone(), p.upstream.clone());
                pack.enabled = p.enabled.unwrap_or(true);
                pack
            })
            .collect();
        let names: Vec<_> = proxies.iter().map(|p| p.name.as_str()).collect();
        let created = self
            .blocking(format!("populate {}", names.join(",")), log, move |c| {
                c.populate(packs)
                    .map(|ps| ps.into_iter().map(|p| p.proxy_pack).collect::<Vec<_>>())
            })
            .await?;
        created.into_iter().map(ProxyState::from_pack).collect()
    }

    pub async fn set_enabled(
        &self,
        proxy: &str,
        enabled: bool,
        log: &mut Vec<Call>,
    ) -> Result<(), String> {
        let name = proxy.to_string();
        let op = format!("{} {proxy}", if enabled { "enable" } else { "disable" });
        self.blocking(op, log, move |c| {
            let proxy = c.find_proxy(&name)?;
            if enabled {
                proxy.enable()
            } else {
                proxy.disable()
            }
        })
        .await
    }

    /// Adds one toxic, named as `spec` says (plain HTTP: `toxiproxy_rust` can only give
    /// Toxiproxy's default name, and has no `reset_peer`).
    pub async fn add_toxic(
        &self,
        proxy: &str,
        spec: &ToxicSpec,
        log: &mut Vec<Call>,
    ) -> Result<(), String> {
        let op = format!("add_toxic {proxy} {}", spec.name);
        let body = serde_json::to_vec(&spec.to_json()).map_err(|e| e.to_string())?;
        let path = format!("/proxies/{}/toxics", encode(proxy));
        self.http(Method::POST, &path, Some(body), op, log)
            .await
            .map(|_| ())
    }

    /// Removes one toxic by name (plain HTTP: toxiproxy_rust can only remove them all).
    pub async fn remove_toxic(
        &self,
        proxy: &str,
        toxic: &str,
        log: &mut Vec<Call>,
    ) -> Result<(), String> {
        let path = format!("/proxies/{}/toxics/{}", encode(proxy), encode(toxic));
        let op = format!("remove_toxic {proxy} {toxic}");
        self.http(Method::DELETE, &path, None, op, log)
            .await
            .map(|_| ())
    }

    /// Enables every proxy and removes every toxic.
    pub async fn reset(&self, log: &mut Vec<Call>) -> Result<(), String> {
        self.blocking("reset".to_string(), log, |c| c.reset()).await
    }

    /// Brings each proxy in `desired` to exactly that state, then reads it back.
    pub async fn reconcile(
        &self,
        desired: &BTreeMap<String, ProxyDesired>,
        log: &mut Vec<Call>,
    ) -> Result<(), String> {
        if desired.is_empty() {
            return Ok(());
        }
        let desired: BTreeMap<&String, ProxyDesired> = desired
            .iter()
            .map(|(name, want)| {
                let toxics = want.toxics.iter().map(|t| self.ours(t)).collect();
                (
                    name,
                    ProxyDesired {
                        enabled: want.enabled,
                        toxics,
                    },
                )
            })
            .collect();
        let current = self.proxies(log).await?;
        for (&name, want) in &desired {
            let have = current
                .get(name)
                .ok_or_else(|| format!("proxy {name} does not exist on {}", self.url))?;
            let stale = have.toxics.iter().filter(|t| {
                !want
                    .toxics
                    .iter()
                    .any(|w| w.name == t.name && w.same_effect(t))
            });
            for toxic in stale {
                self.remove_toxic(name, &toxic.name, log).await?;
            }
            if have.enabled != want.enabled {
                self.set_enabled(name, want.enabled, log).await?;
            }
            let missing = want.toxics.iter().filter(|w| {
                !have
                    .toxics
                    .iter()
                    .any(|t| t.name == w.name && t.same_effect(w))
            });
            for toxic in missing {
                self.add_toxic(name, toxic, log).await?;
            }
        }
        let after = self.proxies(log).await?;
        for (&name, want) in &desired {
            match after.get(name) {
                Some(found) if found.matches(want) => {}
                found => {
                    return Err(format!(
                        "read-back of proxy {name} does not match: wanted enabled={} toxics=[{}], found {}",
                        want.enabled,
                        names(&want.toxics),
                        found.map_or("no proxy".to_string(), |f| format!(
                            "enabled={} toxics=[{}]",
                            f.enabled,
                            names(&f.toxics)
                        ))
                    ));
                }
            }
        }
        Ok(())
    }

    /// `/reset`, then reads back until every proxy is enabled and has no toxic.
    pub async fn heal(&self, log: &mut Vec<Call>) -> Result<(), String> {
        let mut last_problem = String::new();
        for attempt in 0..HEAL_ATTEMPTS {
            if attempt > 0 {
                // The control plane can stall under load; give it a moment before retrying.
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
            }
            if let Err(err) = self.reset(log).await {
                last_problem = err;
                continue;
            }
            match self.proxies(log).await {
                Ok(proxies) => {
                    let dirty: Vec<_> = proxies
                        .values()
                        .filter(|p| !p.is_clean())
                        .map(|p| {
                            format!(
                                "{} (enabled={}, toxics=[{}])",
                                p.name,
                                p.enabled,
                                names(&p.toxics)
                            )
                        })
                        .collect();
                    if dirty.is_empty() {
                        return Ok(());
                    }
                    last_problem = format!("still faulty after /reset: {}", dirty.join("; "));
                }
                Err(err) => last_problem = err,
            }
        }
        Err(last_problem)
    }
}

fn names(toxics: &[ToxicSpec]) -> String {
    toxics
        .iter()
        .map(|t| t.name.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// A name as one path segment (percent-encoding all but unreserved characters).
fn encode(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
