//! A stub region for benchmarking the checkout workload itself: answers every
//! `POST /v1/checkout` at once with `201 {"status":"order_confirmed"}` (and `/admin/state`
//! with three skus), on one thread, so the generator, not the target, is what is measured.
//!
//!   cargo run --release -p loadgen --example checkout_stub -- 127.0.0.1:18181
//!
//! Prints `listening on http://ADDR` and serves until killed (or stdin closes, when
//! started with `--until-stdin-closes`, so a script's exit stops it).

use std::io::Read;

use rig_http::{Method, StatusCode};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:0".into());
    let until_stdin_closes = args.any(|a| a == "--until-stdin-closes");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        println!("listening on http://{}", listener.local_addr()?);
        let stop = async move {
            if until_stdin_closes {
                let _ = tokio::task::spawn_blocking(|| {
                    let mut sink = Vec::new();
                    let _ = std::io::stdin().read_to_end(&mut sink);
                })
                .await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        rig_http::serve(
            listener,
            |req: rig_http::Request<rig_http::Incoming>| async move {
                Ok(if req.method() == Method::POST {
                    rig_http::json(
                        StatusCode::CREATED,
                        &serde_json::json!({"status": "order_confirmed"}),
                    )
                } else {
                    rig_http::json(
                        StatusCode::OK,
                        &serde_json::json!({"inventory": [
                            {"sku": "sku-1"}, {"sku": "sku-2"}, {"sku": "sku-3"}
                        ]}),
                    )
                })
            },
            stop,
        )
        .await
    })
}
