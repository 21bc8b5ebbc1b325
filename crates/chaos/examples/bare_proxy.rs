//! The floor for `bench/proxy.sh`: a TCP proxy that only copies bytes
//! (`tokio::io::copy_bidirectional`), no toxics, no API. Comparing `rig toxiproxy` with it
//! separates what the chaos proxy adds from what any user-space proxy costs on this machine.
//!
//! `cargo run --release -p chaos --example bare_proxy -- LISTEN UPSTREAM`

use tokio::net::{TcpListener, TcpStream};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        eprintln!("usage: bare_proxy LISTEN UPSTREAM");
        std::process::exit(2);
    };
    let listener = TcpListener::bind(&listen).await?;
    loop {
        let (mut client, _) = listener.accept().await?;
        let upstream = upstream.clone();
        tokio::spawn(async move {
            if let Ok(mut server) = TcpStream::connect(&upstream).await {
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            }
        });
    }
}
