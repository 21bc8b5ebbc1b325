//! A TCP forwarder the test controls, standing in for a proxy on one hop: pass traffic,
//! blackhole it (connections stay open, bytes vanish), or refuse it (close everything).

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Pass,
    Blackhole,
    Refuse,
}

pub struct Forwarder {
    pub addr: SocketAddr,
    mode: watch::Sender<Mode>,
}

impl Forwarder {
    /// Forwards connections on a new 127.0.0.1:0 listener to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (mode, rx) = watch::channel(Mode::Pass);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if *rx.borrow() == Mode::Refuse {
                    drop(client);
                    continue;
                }
                tokio::spawn(pipe(client, upstream, rx.clone()));
            }
        });
        Self { addr, mode }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }
}

async fn pipe(mut client: TcpStream, upstream: SocketAddr, mut mode: watch::Receiver<Mode>) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (mut a, mut b) = ([0u8; 16 * 1024], [0u8; 16 * 1024]);
    loop {
        tokio::select! {
            read = client.read(&mut a) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => if *mode.borrow() == Mode::Pass && server.write_all(&a[..n]).await.is_err() { return },
            },
            read = server.read(&mut b) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => if *mode.borrow() == Mode::Pass && client.write_all(&b[..n]).await.is_err() { return },
            },
            changed = mode.changed() => {
                if changed.is_err() || *mode.borrow() == Mode::Refuse {
                    return;
                }
            }
        }
    }
}
