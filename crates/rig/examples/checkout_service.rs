//! A second implementation of the checkout contract (README, "Test your own checkout
//! service"), deliberately unlike the reference system: one process, one in-memory order
//! book shared by both entry addresses, no stores the rig can read, no repair worker (a
//! payment whose outcome is unknown is settled by a task of its own). It pays through the
//! rig's provider and delivers each confirmation to the rig's event sink, so
//! `rig run PROFILE --regions URL_A,URL_B` judges it from the rig's witnesses alone.
//!
//! ```sh
//! cargo run --release --example checkout_service -- --profile profiles/quickstart.toml \
//!   --listen-a 127.0.0.1:19081 --listen-b 127.0.0.1:19082
//! ```
//!
//! `--fresh-key-per-retry` is its bug on purpose: a retried payment goes out under a new
//! idempotency key, so a retry after a lost answer charges twice.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rig_http::{HttpClient, Incoming, Method, Reply, Request, StatusCode, json};
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// One entry address and where its payments and events go.
struct Entry {
    name: &'static str,
    provider: String,
    sink: String,
}

#[derive(Clone)]
struct Order {
    fingerprint: String,
    status: &'static str,
    reason: Option<&'static str>,
    items: Vec<(String, i64)>,
    version: i64,
}

struct Shop {
    orders: Mutex<HashMap<String, Order>>,
    stock: Mutex<HashMap<String, i64>>,
    prices: HashMap<String, i64>,
    http: HttpClient,
    fresh_key_per_retry: bool,
}

struct Args {
    profile: String,
    listen: [String; 2],
    provider: [String; 2],
    sink: [String; 2],
    fresh_key_per_retry: bool,
}

fn args() -> Result<Args, String> {
    let mut args = Args {
        profile: "profiles/quickstart.toml".into(),
        listen: ["127.0.0.1:19081".into(), "127.0.0.1:19082".into()],
        provider: [
            "http://127.0.0.1:18091".into(),
            "http://127.0.0.1:18092".into(),
        ],
        sink: [
            "http://127.0.0.1:18095".into(),
            "http://127.0.0.1:18096".into(),
        ],
        fresh_key_per_retry: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--fresh-key-per-retry" {
            args.fresh_key_per_retry = true;
            continue;
        }
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let slot = match flag.as_str() {
            "--profile" => &mut args.profile,
            "--listen-a" => &mut args.listen[0],
            "--listen-b" => &mut args.listen[1],
            "--provider-a" => &mut args.provider[0],
            "--provider-b" => &mut args.provider[1],
            "--sink-a" => &mut args.sink[0],
            "--sink-b" => &mut args.sink[1],
            other => return Err(format!("unknown flag {other}")),
        };
        *slot = value;
    }
    Ok(args)
}

#[tokio::main]
async fn main() {
    let args = match args() {
        Ok(args) => args,
        Err(err) => {
            eprintln!("checkout_service: {err}");
            std::process::exit(2);
        }
    };
    let loaded = match rig::run::profile::load(std::path::Path::new(&args.profile), &[], None, &[])
    {
        Ok(loaded) => loaded,
        Err(err) => {
            eprintln!("checkout_service: {err}");
            std::process::exit(2);
        }
    };
    let target = &loaded.profile.target;
    let shop = Arc::new(Shop {
        orders: Mutex::new(HashMap::new()),
        stock: Mutex::new(
            target
                .catalog
                .iter()
                .map(|i| (i.sku.clone(), target.initial_stock(&i.sku)))
                .collect(),
        ),
        prices: target
            .catalog
            .iter()
            .map(|i| (i.sku.clone(), i.price_cents))
            .collect(),
        http: HttpClient::new(Duration::from_millis(500), 64),
        fresh_key_per_retry: args.fresh_key_per_retry,
    });
    let mut servers = Vec::new();
    for (n, name) in ["a", "b"].into_iter().enumerate() {
        let listener = match TcpListener::bind(&args.listen[n]).await {
            Ok(listener) => listener,
            Err(err) => {
                eprintln!(
                    "checkout_service: cannot listen on {}: {err}",
                    args.listen[n]
                );
                std::process::exit(2);
            }
        };
        let entry = Arc::new(Entry {
            name,
            provider: args.provider[n].trim_end_matches('/').to_string(),
            sink: args.sink[n].trim_end_matches('/').to_string(),
        });
        eprintln!(
            "checkout_service: entry {name} on http://{} (pays at {}, events to {})",
            listener.local_addr().unwrap(),
            entry.provider,
            entry.sink
        );
        let shop = shop.clone();
        servers.push(tokio::spawn(rig_http::serve(
            listener,
            move |req| {
                let (shop, entry) = (shop.clone(), entry.clone());
                async move { Ok(shop.handle(req, &entry).await) }
            },
            async {
                let _ = tokio::signal::ctrl_c().await;
            },
        )));
    }
    for server in servers {
        let _ = server.await;
    }
}

fn answer(order_id: &str, order: &Order) -> Reply {
    match order.status {
        "order_confirmed" => json(
            StatusCode::CREATED,
            &json!({"order_id": order_id, "status": "order_confirmed"}),
        ),
        "failed_safely" => json(
            StatusCode::OK,
            &json!({"order_id": order_id, "status": "failed_safely", "reason": order.reason}),
        ),
        _ => json(
            StatusCode::ACCEPTED,
            &json!({"order_id": order_id, "status": "payment_pending", "status_url": format!("/v1/orders/{order_id}")}),
        ),
    }
}

/// A payment's outcome as far as this service can tell.
enum Paid {
    Authorized,
    Declined,
    Unknown,
}

impl Shop {
    async fn handle(self: &Arc<Self>, req: Request<Incoming>, entry: &Arc<Entry>) -> Reply {
        let path = req.uri().path().to_string();
        match (
            req.method().clone(),
            path.trim_matches('/')
                .split('/')
                .collect::<Vec<_>>()
                .as_slice(),
        ) {
            (Method::POST, ["v1", "checkout"]) => self.checkout(req, entry).await,
            (Method::GET, ["v1", "orders", id]) => {
                let order = self.orders.lock().unwrap().get(*id).cloned();
                match order {
                    Some(o) => json(
                        StatusCode::OK,
                        &json!({"order_id": id, "status": o.status, "owner_region": entry.name, "version": o.version, "updated_at": ""}),
                    ),
                    None => json(StatusCode::NOT_FOUND, &json!({"error": "not_found"})),
                }
            }
            (Method::GET, ["healthz"]) => json(StatusCode::OK, &json!({"status": "ok"})),
            _ => json(StatusCode::NOT_FOUND, &json!({"error": "no such route"})),
        }
    }

    async fn checkout(self: &Arc<Self>, req: Request<Incoming>, entry: &Arc<Entry>) -> Reply {
        let bad = |field: &str| {
            json(
                StatusCode::BAD_REQUEST,
                &json!({"error": "invalid_request", "field": field}),
            )
        };
        let Some(key) = req
            .headers()
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
        else {
            return bad("Idempotency-Key");
        };
        let Ok(body) = rig_http::read_body(req.into_body(), 64 * 1024).await else {
            return bad("body");
        };
        let Ok(body) = serde_json::from_slice::<Value>(&body) else {
            return bad("body");
        };
        let Some(order_id) = body["order_id"]
            .as_str()
            .filter(|id| *id == key)
            .map(str::to_string)
        else {
            return bad("order_id");
        };
        let mut items = Vec::new();
        for line in body["items"].as_array().into_iter().flatten() {
            match (line["sku"].as_str(), line["qty"].as_i64()) {
                (Some(sku), Some(qty)) if qty > 0 && self.prices.contains_key(sku) => {
                    items.push((sku.to_string(), qty))
                }
                _ => return bad("items"),
            }
        }
        let fingerprint = body["items"].to_string();
        let amount_cents = items.iter().map(|(sku, qty)| self.prices[sku] * qty).sum();
        {
            let mut orders = self.orders.lock().unwrap();
            if let Some(existing) = orders.get(&order_id) {
                if existing.fingerprint != fingerprint {
                    return json(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        &json!({"error": "idempotency_key_reused"}),
                    );
                }
                return answer(&order_id, existing);
            }
            let mut stock = self.stock.lock().unwrap();
            let in_stock = items
                .iter()
                .all(|(sku, qty)| stock.get(sku).copied().unwrap_or(0) >= *qty);
            let mut order = Order {
                fingerprint,
                status: "payment_authorizing",
                reason: None,
                items: items.clone(),
                version: 1,
            };
            if !in_stock {
                order.status = "failed_safely";
                order.reason = Some("out_of_stock");
                let reply = answer(&order_id, &order);
                orders.insert(order_id, order);
                return reply;
            }
            for (sku, qty) in &items {
                *stock.get_mut(sku).unwrap() -= qty;
            }
            orders.insert(order_id.clone(), order);
        }
        let outcome = self.pay(&order_id, amount_cents, entry).await;
        match outcome {
            Paid::Authorized => self.settle(&order_id, true, entry),
            Paid::Declined => self.settle(&order_id, false, entry),
            Paid::Unknown => {
                // Settled by its own task from the provider's record.
                let (shop, entry, id) = (self.clone(), entry.clone(), order_id.clone());
                tokio::spawn(async move { shop.resolve(&id, &entry).await });
            }
        }
        let order = self.orders.lock().unwrap()[&order_id].clone();
        answer(&order_id, &order)
    }

    /// Up to three tries, one second each.
    async fn pay(&self, order_id: &str, amount_cents: i64, entry: &Entry) -> Paid {
        for attempt in 1..=3 {
            let key = if attempt > 1 && self.fresh_key_per_retry {
                format!("pay:{order_id}:{attempt}")
            } else {
                format!("pay:{order_id}")
            };
            let sent = self
                .http
                .send(
                    Method::POST,
                    &format!("{}/v1/charges", entry.provider),
                    &[("idempotency-key", &key), ("content-type", "application/json")],
                    Some(Bytes::from(
                        json!({"order_id": order_id, "amount_cents": amount_cents, "currency": "USD"}).to_string(),
                    )),
                    Duration::from_secs(1),
                )
                .await;
            if let Ok(answer) = &sent
                && answer.status == StatusCode::OK
            {
                let status = answer
                    .json::<Value>()
                    .and_then(|v| v["status"].as_str().map(str::to_string));
                return match status.as_deref() {
                    Some("authorized") => Paid::Authorized,
                    _ => Paid::Declined,
                };
            }
            tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
        }
        Paid::Unknown
    }

    /// Asks the provider what became of the payment until it knows; voids it if nothing
    /// was charged, so it can never be charged later.
    async fn resolve(&self, order_id: &str, entry: &Entry) {
        let key = format!("pay:{order_id}");
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let url = format!("{}/v1/charges?idempotency_key={key}", entry.provider);
            let Ok(view) = self
                .http
                .send(Method::GET, &url, &[], None, Duration::from_secs(1))
                .await
            else {
                continue;
            };
            let body = view.json::<Value>().unwrap_or_default();
            match (
                view.status.as_u16(),
                body["state"].as_str(),
                body["charge"]["status"].as_str(),
            ) {
                (200, Some("completed"), Some("authorized")) => {
                    return self.settle(order_id, true, entry);
                }
                (200, Some("completed"), _) => return self.settle(order_id, false, entry),
                (200, Some("voided"), _) => return self.settle(order_id, false, entry),
                (404, _, _) => {
                    let void = format!("{}/v1/charges/void?idempotency_key={key}", entry.provider);
                    if let Ok(done) = self
                        .http
                        .send(Method::POST, &void, &[], None, Duration::from_secs(1))
                        .await
                        && done.status.is_success()
                    {
                        return self.settle(order_id, false, entry);
                    }
                }
                _ => {}
            }
        }
    }

    /// Records the final outcome; a confirmation's event goes to the sink until accepted.
    fn settle(&self, order_id: &str, paid: bool, entry: &Entry) {
        let mut orders = self.orders.lock().unwrap();
        let Some(order) = orders.get_mut(order_id) else {
            return;
        };
        if matches!(order.status, "order_confirmed" | "failed_safely") {
            return;
        }
        order.version += 1;
        if paid {
            order.status = "order_confirmed";
            let event = json!({"event_id": format!("ev-{order_id}"), "order_id": order_id, "type": "order_confirmed", "version": order.version});
            let (http, url) = (self.http.clone(), format!("{}/v1/events", entry.sink));
            tokio::spawn(async move {
                loop {
                    let sent = http
                        .send(
                            Method::POST,
                            &url,
                            &[("content-type", "application/json")],
                            Some(Bytes::from(event.to_string())),
                            Duration::from_secs(2),
                        )
                        .await;
                    if sent.is_ok_and(|a| a.status.is_success()) {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            });
        } else {
            order.status = "failed_safely";
            order.reason = Some("payment_declined");
            let mut stock = self.stock.lock().unwrap();
            for (sku, qty) in &order.items {
                *stock.entry(sku.clone()).or_default() += qty;
            }
        }
    }
}
