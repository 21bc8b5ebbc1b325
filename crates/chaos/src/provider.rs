//! The simulated payment provider's fault controls, over HTTP only (the chaos layer knows
//! nothing of checkout): `POST /admin/faults` replaces the active set, `DELETE` clears it,
//! `GET` reads it back.

use std::time::Duration;

use bytes::Bytes;
use rig_http::{HttpClient, Method};
use serde::{Deserialize, Serialize};

use crate::ChaosError;
use crate::journal::Call;

/// How long one admin call may take.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The provider's fault set; an absent field means "no such fault".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProviderFaults {
    /// Requests per second the provider serves; beyond that it answers 429 + Retry-After.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_per_sec: Option<f64>,
    /// Requests the provider works on at once; beyond that it answers 429.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u64>,
    /// Added to every request, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// Fraction (0..1) of requests answered with a server error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<f64>,
    /// Fraction (0..1) of charges committed whose response is then dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_then_drop_rate: Option<f64>,
    /// Every request fails (503).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outage: Option<bool>,
    /// The Stripe face's webhooks are held back this long before their first delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_delay_ms: Option<u64>,
    /// Fraction (0..1) of webhook events never delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_drop_rate: Option<f64>,
    /// Fraction (0..1) of webhook deliveries sent twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_duplicate_rate: Option<f64>,
}

impl ProviderFaults {
    /// No fault is active (an explicit `outage: false` counts as none).
    pub fn is_clear(&self) -> bool {
        self.fields_set().is_empty()
    }

    /// Names of the faults that are set.
    pub fn fields_set(&self) -> Vec<&'static str> {
        let mut set = Vec::new();
        if self.rate_limit_per_sec.is_some() {
            set.push("rate_limit_per_sec");
        }
        if self.max_concurrency.is_some() {
            set.push("max_concurrency");
        }
        if self.latency_ms.is_some() {
            set.push("latency_ms");
        }
        if self.error_rate.is_some() {
            set.push("error_rate");
        }
        if self.commit_then_drop_rate.is_some() {
            set.push("commit_then_drop_rate");
        }
        if self.outage == Some(true) {
            set.push("outage");
        }
        if self.webhook_delay_ms.is_some() {
            set.push("webhook_delay_ms");
        }
        if self.webhook_drop_rate.is_some() {
            set.push("webhook_drop_rate");
        }
        if self.webhook_duplicate_rate.is_some() {
            set.push("webhook_duplicate_rate");
        }
        set
    }

    /// Adds `other`'s faults to these; returns the fields both set (a conflict).
    pub fn merge(&mut self, other: &Self) -> Vec<&'static str> {
        let clashes: Vec<_> = self
            .fields_set()
            .into_iter()
            .filter(|f| other.fields_set().contains(f))
            .collect();
        fn take<T: Clone>(mine: &mut Option<T>, theirs: &Option<T>) {
            if theirs.is_some() {
                mine.clone_from(theirs);
            }
        }
        take(&mut self.rate_limit_per_sec, &other.rate_limit_per_sec);
        take(&mut self.max_concurrency, &other.max_concurrency);
        take(&mut self.latency_ms, &other.latency_ms);
        take(&mut self.error_rate, &other.error_rate);
        take(
            &mut self.commit_then_drop_rate,
            &other.commit_then_drop_rate,
        );
        if other.outage == Some(true) {
            self.outage = Some(true);
        }
        take(&mut self.webhook_delay_ms, &other.webhook_delay_ms);
        take(&mut self.webhook_drop_rate, &other.webhook_drop_rate);
        take(
            &mut self.webhook_duplicate_rate,
            &other.webhook_duplicate_rate,
        );
        clashes
    }

    /// Equal as far as the provider's behaviour goes (read-back check).
    pub fn same_as(&self, other: &Self) -> bool {
        fn close(a: Option<f64>, b: Option<f64>) -> bool {
            match (a, b) {
                (None, None) => true,
                (Some(a), Some(b)) => (a - b).abs() < 1e-9,
                _ => false,
            }
        }
        close(self.rate_limit_per_sec, other.rate_limit_per_sec)
            && self.max_concurrency == other.max_concurrency
            && self.latency_ms == other.latency_ms
            && close(self.error_rate, other.error_rate)
            && close(self.commit_then_drop_rate, other.commit_then_drop_rate)
            && self.outage.unwrap_or(false) == other.outage.unwrap_or(false)
            && self.webhook_delay_ms == other.webhook_delay_ms
            && close(self.webhook_drop_rate, other.webhook_drop_rate)
            && close(self.webhook_duplicate_rate, other.webhook_duplicate_rate)
    }
}

/// The admin API of one provider.
#[derive(Debug, Clone)]
pub struct ProviderAdmin {
    name: String,
    faults_url: String,
    http: HttpClient,
}

impl ProviderAdmin {
    /// `url` is the provider's base URL (`http://127.0.0.1:9100`); a URL that already ends in
    /// `/admin/faults` is accepted too.
    pub fn new(name: &str, url: &str) -> Result<Self, ChaosError> {
        let base = url.trim_end_matches('/');
        let base = base.strip_suffix("/admin/faults").unwrap_or(base);
        let parsed: rig_http::Uri = base.parse().map_err(|e| ChaosError::BadUrl {
            what: "provider admin URL",
            url: url.to_string(),
            reason: format!("{e}; write e.g. http://127.0.0.1:9100"),
        })?;
        if parsed.scheme_str() != Some("http") || parsed.host().is_none() {
            return Err(ChaosError::BadUrl {
                what: "provider admin URL",
                url: url.to_string(),
                reason: "it must be http://HOST:PORT (e.g. http://127.0.0.1:9100)".to_string(),
            });
        }
        Ok(Self {
            name: name.to_string(),
            faults_url: format!("{base}/admin/faults"),
            http: HttpClient::new(Duration::from_secs(2), 2),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn call(&self, op: &str, status: Option<u16>, error: Option<String>) -> Call {
        Call {
            target: format!("provider:{}", self.name),
            op: op.to_string(),
            via: "http".to_string(),
            status,
            error,
        }
    }

    async fn send(
        &self,
        method: Method,
        op: &str,
        body: Option<Bytes>,
        log: &mut Vec<Call>,
    ) -> Result<Bytes, String> {
        let sent = self
            .http
            .send(method, &self.faults_url, &[], body, ADMIN_TIMEOUT)
            .await;
        match sent {
            Ok(response) if response.status.is_success() => {
                log.push(self.call(op, Some(response.status.as_u16()), None));
                Ok(response.body)
            }
            Ok(response) => {
                let text = String::from_utf8_lossy(&response.body).into_owned();
                let message = format!("{} answered {}: {text}", self.faults_url, response.status);
                log.push(self.call(op, Some(response.status.as_u16()), Some(message.clone())));
                Err(message)
            }
            Err(err) => {
                log.push(self.call(op, None, Some(err.to_string())));
                Err(err.to_string())
            }
        }
    }

    /// Replaces the provider's active faults with `faults`.
    pub async fn set(&self, faults: &ProviderFaults, log: &mut Vec<Call>) -> Result<(), String> {
        let body = serde_json::to_vec(faults).map_err(|e| e.to_string())?;
        self.send(Method::POST, "set_faults", Some(Bytes::from(body)), log)
            .await
            .map(|_| ())
    }

    /// Clears every fault.
    pub async fn clear(&self, log: &mut Vec<Call>) -> Result<(), String> {
        self.send(Method::DELETE, "clear_faults", None, log)
            .await
            .map(|_| ())
    }

    /// Reads the active faults back.
    pub async fn read(&self, log: &mut Vec<Call>) -> Result<ProviderFaults, String> {
        let body = self.send(Method::GET, "read_faults", None, log).await?;
        serde_json::from_slice(&body)
            .map_err(|e| format!("{} sent faults that are not JSON: {e}", self.faults_url))
    }

    /// Sets `faults` (or clears them when there are none) and confirms by reading back.
    pub async fn reconcile(
        &self,
        faults: &ProviderFaults,
        log: &mut Vec<Call>,
    ) -> Result<(), String> {
        if faults.is_clear() {
            self.clear(log).await?;
        } else {
            self.set(faults, log).await?;
        }
        let found = self.read(log).await?;
        if found.same_as(faults) {
            Ok(())
        } else {
            Err(format!(
                "provider {} read back {} instead of {}",
                self.name,
                serde_json::to_string(&found).unwrap_or_default(),
                serde_json::to_string(faults).unwrap_or_default()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Merging reports clashing fields; `outage: false` reads back as no fault.
    #[test]
    fn merge_and_compare() {
        let mut a = ProviderFaults {
            latency_ms: Some(200),
            ..Default::default()
        };
        let b = ProviderFaults {
            outage: Some(true),
            ..Default::default()
        };
        assert!(a.merge(&b).is_empty());
        assert_eq!(a.fields_set(), vec!["latency_ms", "outage"]);
        let c = ProviderFaults {
            latency_ms: Some(5),
            ..Default::default()
        };
        assert_eq!(a.clone().merge(&c), vec!["latency_ms"]);
        let off = ProviderFaults {
            outage: Some(false),
            ..Default::default()
        };
        assert!(off.is_clear());
        assert!(off.same_as(&ProviderFaults::default()));
        assert!(ProviderAdmin::new("p", "ftp://x").is_err());
        assert!(ProviderAdmin::new("p", "http://127.0.0.1:1/admin/faults").is_ok());
    }
}
