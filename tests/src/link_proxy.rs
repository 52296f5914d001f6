//! A user-space TCP proxy standing for one mesh link, run by the test process: it listens on
//! an address the dialing node can reach and forwards every connection to the real listener.
//! The test can add a fixed one-way delay per direction (bytes keep their order), cut the link
//! — silently (nothing is forwarded, sockets stay open, as a dead route) or by resetting every
//! connection — and heal it. While cut, new connections are refused (accepted and reset).
//!
//! It stands in for `tc qdisc netem`, which this machine does not have.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// How a link is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Stop forwarding in both directions and keep the sockets open: the ends only notice by
    /// their own keepalives. Bytes already read are held and delivered on heal, as TCP would
    /// retransmit them after a short outage.
    Blackhole,
    /// Reset every connection (RST to both ends).
    Reset,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Open,
    Cut(Cut),
}

struct Shared {
    mode: watch::Sender<Mode>,
    delay_us: AtomicU64,
    accepted: AtomicU64,
    forwarded: AtomicU64,
}

impl Shared {
    fn delay(&self) -> Duration {
        Duration::from_micros(self.delay_us.load(Ordering::Relaxed))
    }

    /// Returns once the link is not blackholed (a reset link ends its connections anyway).
    async fn wait_passable(&self) {
        let mut rx = self.mode.subscribe();
        let _ = rx.wait_for(|m| *m != Mode::Cut(Cut::Blackhole)).await;
    }
}

/// One proxied link; stops (dropping every connection) when dropped.
pub struct LinkProxy {
    addr: SocketAddr,
    target: SocketAddr,
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for LinkProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkProxy")
            .field("addr", &self.addr)
            .field("target", &self.target)
            .finish()
    }
}

impl LinkProxy {
    /// Listens on an ephemeral port of `listen` and forwards to `target`.
    pub fn start(listen: IpAddr, target: SocketAddr) -> LinkProxy {
        let listener = std::net::TcpListener::bind(SocketAddr::new(listen, 0))
            .unwrap_or_else(|e| panic!("proxy cannot listen on {listen}: {e}"));
        Self::start_on(listener, target)
    }

    /// Forwards what `listener` (made anywhere, e.g. in a node's network namespace) accepts to
    /// `target`.
    pub fn start_on(listener: std::net::TcpListener, target: SocketAddr) -> LinkProxy {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("link-proxy")
            .enable_all()
            .build()
            .expect("proxy runtime");
        listener
            .set_nonblocking(true)
            .expect("non-blocking proxy socket");
        let listener = {
            let _entered = runtime.enter();
            TcpListener::from_std(listener).expect("proxy socket")
        };
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared {
            mode: watch::Sender::new(Mode::Open),
            delay_us: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
        });
        runtime.spawn(accept_loop(listener, target, shared.clone()));
        LinkProxy {
            addr,
            target,
            shared,
            runtime: Some(runtime),
        }
    }

    /// Where the dialing node connects.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The real listener behind it.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Delays every byte by `one_way` in each direction (0 removes the delay).
    pub fn set_delay(&self, one_way: Duration) {
        let us = u64::try_from(one_way.as_micros()).unwrap_or(u64::MAX);
        self.shared.delay_us.store(us, Ordering::Relaxed);
    }

    /// Cuts the link.
    pub fn cut(&self, how: Cut) {
        self.shared.mode.send_replace(Mode::Cut(how));
    }

    /// Heals the link: held bytes flow again and new connections are forwarded.
    pub fn heal(&self) {
        self.shared.mode.send_replace(Mode::Open);
    }

    /// Connections accepted so far (including refused ones).
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::Relaxed)
    }

    /// Connections forwarded to the target so far.
    pub fn forwarded(&self) -> u64 {
        self.shared.forwarded.load(Ordering::Relaxed)
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        shared.accepted.fetch_add(1, Ordering::Relaxed);
        if *shared.mode.borrow() != Mode::Open {
            let _ = client.set_zero_linger();
            continue;
        }
        tokio::spawn(serve(client, target, shared.clone()));
    }
}

/// A second descriptor of the same socket, kept to reset it while the pumps own the stream.
fn control_handle(s: &TcpStream) -> Option<std::net::TcpStream> {
    s.as_fd()
        .try_clone_to_owned()
        .ok()
        .map(std::net::TcpStream::from)
}

fn reset(handle: std::net::TcpStream) {
    if let Ok(s) = TcpStream::from_std(handle) {
        let _ = s.set_zero_linger();
    }
}

async fn serve(client: TcpStream, target: SocketAddr, shared: Arc<Shared>) {
    let server =
        match tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(target)).await {
            Ok(Ok(s)) => s,
            _ => {
                let _ = client.set_zero_linger();
                return;
            }
        };
    shared.forwarded.fetch_add(1, Ordering::Relaxed);
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let handles = [control_handle(&client), control_handle(&server)];
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let both = async {
        tokio::join!(pump(cr, sw, shared.clone()), pump(sr, cw, shared.clone()));
    };
    tokio::pin!(both);
    let mut mode = shared.mode.subscribe();
    tokio::select! {
        _ = &mut both => {}
        _ = mode.wait_for(|m| *m == Mode::Cut(Cut::Reset)) => {
            for h in handles.into_iter().flatten() {
                reset(h);
            }
        }
    }
    // The pumps (and the halves they own) drop here; the last descriptor closes each socket.
}

/// Copies one direction: a reader stamps each chunk, a writer delivers it `delay` later, in
/// order; neither moves bytes while the link is blackholed.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, shared: Arc<Shared>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Option<Vec<u8>>)>();
    let read_shared = shared.clone();
    let read = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            read_shared.wait_passable().await;
            let chunk = match from.read(&mut buf).await {
                Ok(0) | Err(_) => None,
                Ok(n) => Some(buf[..n].to_vec()),
            };
            let end = chunk.is_none();
            if tx.send((Instant::now(), chunk)).is_err() || end {
                return;
            }
        }
    };
    let write = async move {
        while let Some((read_at, chunk)) = rx.recv().await {
            tokio::time::sleep_until(read_at + shared.delay()).await;
            shared.wait_passable().await;
            match chunk {
                Some(bytes) => {
                    if to.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
                None => {
                    let _ = to.shutdown().await;
                    return;
                }
            }
        }
    };
    tokio::join!(read, write);
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{Ipv4Addr, TcpListener};

    use super::*;

    /// A proxy in front of a loopback listener, a client connected through it, and the
    /// listener's side of that connection.
    fn pair() -> (LinkProxy, std::net::TcpStream, std::net::TcpStream) {
        let target = TcpListener::bind("127.0.0.1:0").unwrap();
        let proxy = LinkProxy::start(
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            target.local_addr().unwrap(),
        );
        let client = std::net::TcpStream::connect(proxy.addr()).unwrap();
        let (server, _) = target.accept().unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        (proxy, client, server)
    }

    #[test]
    fn delayed_bytes_arrive_late_and_in_order() {
        let (proxy, mut client, mut server) = pair();
        proxy.set_delay(Duration::from_millis(300));
        let sent = std::time::Instant::now();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let writer = {
            let data = data.clone();
            std::thread::spawn(move || {
                for chunk in data.chunks(1000) {
                    client.write_all(chunk).unwrap();
                }
                client
            })
        };
        let mut got = vec![0u8; data.len()];
        server.read_exact(&mut got[..1]).unwrap();
        assert!(sent.elapsed() >= Duration::from_millis(300), "delayed");
        server.read_exact(&mut got[1..]).unwrap();
        assert_eq!(got, data, "every byte, in order");
        drop(writer.join().unwrap());
    }

    #[test]
    fn a_blackhole_holds_bytes_until_healed_and_a_reset_closes() {
        let (proxy, mut client, mut server) = pair();
        proxy.cut(Cut::Blackhole);
        client.write_all(b"held").unwrap();
        server
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut buf = [0u8; 4];
        assert!(server.read(&mut buf).is_err(), "nothing crosses a cut link");
        proxy.heal();
        server
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        server.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"held");

        proxy.cut(Cut::Reset);
        let closed = server.read(&mut buf);
        assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
        // Refused while cut: accepted and reset at once, never forwarded.
        let before = proxy.forwarded();
        let mut refused = std::net::TcpStream::connect(proxy.addr()).unwrap();
        refused
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let r = refused.read(&mut buf);
        assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
        assert_eq!(proxy.forwarded(), before);
    }
}
