//! A TCP relay on a free loopback port that forwards to a real peer until told to
//! blackhole: from then on it neither reads nor writes in either direction and
//! closes nothing, so the client sees what a host whose network died mid-session
//! looks like (no FIN, no RST, no bytes). Dropped, it closes everything.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

pub struct Relay {
    port: u16,
    blackhole: CancellationToken,
    /// Ends the accept loop and every pump (and with them the held sockets).
    stop: CancellationToken,
}

impl Relay {
    /// Forward every connection to `127.0.0.1:upstream`.
    pub async fn start(upstream: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (blackhole, stop) = (CancellationToken::new(), CancellationToken::new());
        let (b, s) = (blackhole.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let client = tokio::select! {
                    _ = s.cancelled() => return,
                    r = listener.accept() => match r {
                        Ok((c, _)) => c,
                        Err(_) => return,
                    },
                };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else { continue };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pump(cr, sw, b.clone(), s.clone()));
                tokio::spawn(pump(sr, cw, b.clone(), s.clone()));
            }
        });
        Relay { port, blackhole, stop }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// From now on nothing crosses, in either direction, and nothing is closed.
    pub fn blackhole(&self) {
        self.blackhole.cancel();
    }

    /// Blackhole once `ready` says so (polled by `helpers::wait_for` for at most 60 s;
    /// never after that, so a test whose event never came fails on its own assertions),
    /// from a task of its own: e.g. once the peer has logged the request.
    pub fn blackhole_when(self: &Arc<Self>, ready: impl Fn() -> bool + Send + Sync + 'static) {
        let relay = self.clone();
        tokio::spawn(async move {
            let came = crate::helpers::wait_for(std::time::Duration::from_secs(60), || {
                let now = ready();
                async move { now.then_some(()) }
            })
            .await;
            if came.is_some() {
                relay.blackhole();
            }
        });
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Copy one direction until EOF or the blackhole; after the blackhole, hold both
/// halves open, untouched, until the relay is dropped.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, blackhole: CancellationToken, stop: CancellationToken) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = tokio::select! {
            biased;
            _ = blackhole.cancelled() => break,
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => {
                    let _ = to.shutdown().await;
                    return;
                }
                Ok(n) => n,
            },
        };
        // Bytes read as the blackhole starts are lost, as on a dead link.
        tokio::select! {
            biased;
            _ = blackhole.cancelled() => break,
            r = to.write_all(&buf[..n]) => if r.is_err() { return },
        }
    }
    stop.cancelled().await;
    drop((from, to));
}
