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
//!
//! `--pay-with-stripe URL` pays through the rig's Stripe-compatible face instead, with
//! Stripe's official Node SDK (`stripe_payer.js` beside this file, run by `node`; set
//! `NODE_PATH` to a `node_modules` with the npm `stripe` package): a PaymentIntent per
//! payment with `metadata[order_id]`, entry a with `--stripe-key-a` (default
//! `sk_test_rig_a`), entry b with `--stripe-key-b`; an unknown outcome is settled by
//! searching the order's intents and, if none is there, paying again under the same key.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rig_http::{HttpClient, Incoming, Method, Reply, Request, StatusCode, json};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// One entry address and where its payments and events go.
struct Entry {
    name: &'static str,
    provider: String,
    sink: String,
    /// The Stripe secret key this entry pays with (`--pay-with-stripe`).
    secret_key: String,
}

/// Stripe's Node SDK in a child process (`stripe_payer.js`): one JSON line per request.
struct Payer {
    stdin: tokio::sync::Mutex<tokio::process::ChildStdin>,
    waiting: Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>,
    next: AtomicU64,
    _child: tokio::process::Child,
}

impl Payer {
    fn start(stripe_url: &str) -> std::io::Result<Self> {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/stripe_payer.js");
        let mut child = tokio::process::Command::new("node")
            .arg(script)
            .arg(stripe_url)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        let waiting: Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>> = Arc::default();
        let answers = waiting.clone();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(answer) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                let id = answer["id"].as_u64().unwrap_or(u64::MAX);
                if let Some(waiter) = answers.lock().unwrap().remove(&id) {
                    let _ = waiter.send(answer);
                }
            }
        });
        Ok(Self {
            stdin: tokio::sync::Mutex::new(stdin),
            waiting,
            next: AtomicU64::new(1),
            _child: child,
        })
    }

    /// One request's `outcome`, or "unknown" if the SDK did not answer within 10 s.
    async fn ask(&self, mut request: Value) -> String {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        request["id"] = json!(id);
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().unwrap().insert(id, tx);
        let line = format!("{request}\n");
        if self
            .stdin
            .lock()
            .await
            .write_all(line.as_bytes())
            .await
            .is_err()
        {
            self.waiting.lock().unwrap().remove(&id);
            return "unknown".into();
        }
        match tokio::time::timeout(Duration::from_secs(10), rx).await {
            Ok(Ok(answer)) => answer["outcome"].as_str().unwrap_or("unknown").to_string(),
            _ => {
                self.waiting.lock().unwrap().remove(&id);
                "unknown".into()
            }
        }
    }
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
    stripe: Option<Payer>,
}

struct Args {
    profile: String,
    listen: [String; 2],
    provider: [String; 2],
    sink: [String; 2],
    fresh_key_per_retry: bool,
    stripe: String,
    stripe_keys: [String; 2],
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
        stripe: String::new(),
        stripe_keys: ["sk_test_rig_a".into(), "sk_test_rig_b".into()],
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
            "--pay-with-stripe" => &mut args.stripe,
            "--stripe-key-a" => &mut args.stripe_keys[0],
            "--stripe-key-b" => &mut args.stripe_keys[1],
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
    let stripe = if args.stripe.is_empty() {
        None
    } else {
        match Payer::start(&args.stripe) {
            Ok(payer) => Some(payer),
            Err(err) => {
                eprintln!("checkout_service: cannot start node for --pay-with-stripe: {err}");
                std::process::exit(2);
            }
        }
    };
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
        stripe,
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
            secret_key: args.stripe_keys[n].clone(),
        });
        let pays_at = if args.stripe.is_empty() {
            entry.provider.clone()
        } else {
            format!("{} with Stripe's Node SDK", args.stripe)
        };
        eprintln!(
            "checkout_service: entry {name} on http://{} (pays at {pays_at}, events to {})",
            listener.local_addr().unwrap(),
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
        if let Some(payer) = &self.stripe {
            return self.pay_stripe(payer, order_id, amount_cents, entry).await;
        }
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

    /// Up to three tries through Stripe's SDK (one second each, no retries of the SDK's
    /// own): each under `pay:<order_id>`, or with the bug under a key of its own.
    async fn pay_stripe(
        &self,
        payer: &Payer,
        order_id: &str,
        amount_cents: i64,
        entry: &Entry,
    ) -> Paid {
        for attempt in 1..=3 {
            let key = if attempt > 1 && self.fresh_key_per_retry {
                format!("pay:{order_id}:{attempt}")
            } else {
                format!("pay:{order_id}")
            };
            let request = json!({"op": "pay", "secret_key": entry.secret_key, "order_id": order_id,
                "amount_cents": amount_cents, "idempotency_key": key});
            match payer.ask(request).await.as_str() {
                "authorized" => return Paid::Authorized,
                "declined" => return Paid::Declined,
                _ => tokio::time::sleep(Duration::from_millis(100 * attempt)).await,
            }
        }
        Paid::Unknown
    }

    /// Asks the provider what became of the payment until it knows; voids it if nothing
    /// was charged, so it can never be charged later.
    async fn resolve(&self, order_id: &str, entry: &Entry) {
        if let Some(payer) = &self.stripe {
            return self.resolve_stripe(payer, order_id, entry).await;
        }
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

    /// Searches the order's PaymentIntents until one settles it; with none there, pays
    /// again under the first key (a replay if the lost one landed after all).
    async fn resolve_stripe(&self, payer: &Payer, order_id: &str, entry: &Entry) {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let find = json!({"op": "find", "secret_key": entry.secret_key, "order_id": order_id});
            let outcome = match payer.ask(find).await.as_str() {
                "none" => {
                    let again = json!({"op": "pay", "secret_key": entry.secret_key, "order_id": order_id,
                        "amount_cents": self.amount_of(order_id), "idempotency_key": format!("pay:{order_id}")});
                    payer.ask(again).await
                }
                other => other.to_string(),
            };
            match outcome.as_str() {
                "authorized" => return self.settle(order_id, true, entry),
                "declined" => return self.settle(order_id, false, entry),
                _ => {}
            }
        }
    }

    /// What an order costs at the profile's prices.
    fn amount_of(&self, order_id: &str) -> i64 {
        let orders = self.orders.lock().unwrap();
        orders.get(order_id).map_or(0, |o| {
            o.items
                .iter()
                .map(|(sku, qty)| self.prices[sku] * qty)
                .sum()
        })
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
