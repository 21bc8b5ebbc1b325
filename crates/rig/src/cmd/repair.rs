//! `rig repair`: an operator's audited decision on one order, through the owner region's
//! admin API.

use std::time::Duration;

use clap::{Args, ValueEnum};
use rig_http::{HttpClient, Method, StatusCode};

use crate::exit::{BadInput, Verdict};

/// Resolve one order by hand, with an audit trail: `POST /admin/orders/{id}/resolve` on the
/// order's owner region. The region looks up the provider's record first and refuses a
/// decision it contradicts (confirming without an authorized charge of the order's amount);
/// failing refunds a live charge and voids the key first, and says so. Every decision,
/// applied or refused, is a row in the region's `operator_decisions` with the operator, the
/// note, the decision and the provider record it relied on; an applied one is a transition
/// with actor `operator`, which the verifier checks against the provider's ledger.
///
/// Exit 0 applied, 1 refused (the evidence contradicts it; the evidence is printed), 2 bad
/// input or no such order, 3 the region or the provider could not be asked.
///
/// Example: `rig repair c-42 --region http://127.0.0.1:8081 --decision confirm --operator
/// alice --note "charge ch_9 authorized at the provider; customer called"`.
#[derive(Debug, Args)]
pub struct RepairArgs {
    /// The order to resolve.
    #[arg(value_name = "ORDER_ID")]
    order: String,
    /// The owner region's base URL (its admin API answers loopback clients by default).
    #[arg(long, value_name = "URL")]
    region: String,
    #[arg(long, value_enum)]
    decision: Decision,
    /// Who decides (goes in the audit trail).
    #[arg(long, value_name = "NAME", env = "USER")]
    operator: String,
    /// Why: the evidence looked at (goes in the audit trail).
    #[arg(long, value_name = "TEXT")]
    note: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Decision {
    Confirm,
    Fail,
}

pub async fn run(args: RepairArgs) -> anyhow::Result<Verdict> {
    if args.note.trim().is_empty() {
        return Err(
            BadInput("--note is empty: say what evidence the decision rests on".into()).into(),
        );
    }
    let base = args.region.trim_end_matches('/');
    let url = format!("{base}/admin/orders/{}/resolve", url_segment(&args.order));
    let body = serde_json::json!({
        "decision": match args.decision {
            Decision::Confirm => "confirm",
            Decision::Fail => "fail",
        },
        "operator": args.operator,
        "note": args.note,
    });
    let client = HttpClient::new(Duration::from_secs(5), 1);
    let answer = client
        .send(
            Method::POST,
            &url,
            &[("content-type", "application/json")],
            Some(body.to_string().into()),
            // The region looks the payment up, and may refund and void first.
            Duration::from_secs(30),
        )
        .await
        .map_err(|err| anyhow::anyhow!("POST {url}: {err}"))?;
    let text = String::from_utf8_lossy(&answer.body).to_string();
    let pretty = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or(text);
    match answer.status {
        StatusCode::OK => {
            println!("{pretty}");
            Ok(Verdict::Pass)
        }
        StatusCode::CONFLICT => {
            println!("{pretty}");
            eprintln!("rig repair: refused by region at {base}");
            Ok(Verdict::Fail)
        }
        StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND => Err(BadInput(pretty).into()),
        status => anyhow::bail!("POST {url} answered {status}: {pretty}"),
    }
}

/// An order id as one URL path segment.
fn url_segment(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}
