//! Test support (feature `testing`): real `nats-server` / `valkey-server`
//! processes started from the project's tools directory on free ports, a
//! TCP proxy that a test can cut to make a server unreachable,
//! [`call`], which drives a router with one request, and [`decode_qr`],
//! which reads a QR code image back to its text.
//!
//! The binaries come from `$SHORTLINE_TOOLS_DIR/bin/` (`make test` sets it;
//! `make tools` installs them). Every process is killed when its handle
//! drops, and its data directory removed.
//!
//! [`OwnServer::start_secured`] starts a server with the project's own access
//! control (`config/nats/auth.conf`, `config/valkey/acl.conf`) and fresh
//! random passwords; [`OwnServer::url_as`] gives a user's URL.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A router's complete answer to one request.
#[derive(Debug)]
pub struct Reply {
    pub status: axum::http::StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: bytes::Bytes,
}

impl Reply {
    /// The body as JSON; panics when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// A header as text (`""` when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// Sends one request through `router` (as `tower::ServiceExt::oneshot`) and
/// reads the whole response.
pub async fn call(router: axum::Router, request: axum::http::Request<axum::body::Body>) -> Reply {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let res = router.oneshot(request).await.expect("the router answers");
    let status = res.status();
    let headers = res.headers().clone();
    let body = res
        .into_body()
        .collect()
        .await
        .expect("the body reads")
        .to_bytes();
    Reply {
        status,
        headers,
        body,
    }
}

/// A free TCP port on loopback (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A unique, NATS-token-safe name (`t-<ulid>`), for subjects, streams and keys.
pub fn unique_prefix() -> String {
    format!("t-{}", ulid::Ulid::generate().to_string().to_lowercase())
}

/// `$SHORTLINE_TOOLS_DIR/bin/<name>`, or `tools/venv/bin/<name>` in the repo.
pub fn tool(name: &str) -> PathBuf {
    let dir = std::env::var_os("SHORTLINE_TOOLS_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/venv"),
        PathBuf::from,
    );
    let path = dir.join("bin").join(name);
    assert!(
        path.exists(),
        "{} not found: run `make tools` (or set SHORTLINE_TOOLS_DIR)",
        path.display()
    );
    path
}

/// Which server an [`OwnServer`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    /// `nats-server -js`, data in its own directory.
    Nats,
    /// `valkey-server` without persistence.
    Valkey,
}

/// The users of `config/nats/auth.conf` and `config/valkey/acl.conf`.
pub const NATS_USERS: [&str; 4] = ["admin", "api", "redirect", "analytics"];
pub const VALKEY_USERS: [&str; 2] = ["admin", "shortline"];

/// A server process owned by one test. Can be stopped and started again on
/// the same port (and, for NATS, the same JetStream store).
pub struct OwnServer {
    kind: ServerKind,
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
    /// user -> password, when started with the project's access control.
    passwords: Option<BTreeMap<String, String>>,
}

impl OwnServer {
    /// Starts the server on a free port and waits until it accepts
    /// connections.
    pub async fn start(kind: ServerKind) -> Self {
        let mut server = Self::not_started(kind);
        server.resume().await;
        server
    }

    /// A port and a data directory for the server, without starting it (for
    /// clients that must begin before their server exists); [`resume`]
    /// starts it.
    ///
    /// [`resume`]: OwnServer::resume
    pub fn not_started(kind: ServerKind) -> Self {
        let dir = std::env::temp_dir().join(format!("shortline-{}", unique_prefix()));
        std::fs::create_dir_all(&dir).expect("server dir");
        Self {
            kind,
            port: free_port(),
            dir,
            child: None,
            passwords: None,
        }
    }

    /// Starts the server with the project's access control: NATS with
    /// `config/nats/auth.conf` (users admin, api, redirect, analytics),
    /// Valkey with `config/valkey/acl.conf` (users admin, shortline; default
    /// user off), each user with a fresh random password. The server writes
    /// its log to [`OwnServer::log`].
    pub async fn start_secured(kind: ServerKind) -> Self {
        let mut server = Self::not_started(kind);
        let users: &[&str] = match kind {
            ServerKind::Nats => &NATS_USERS,
            ServerKind::Valkey => &VALKEY_USERS,
        };
        server.passwords = Some(
            users
                .iter()
                .map(|u| {
                    let password = format!("{}{}", ulid::Ulid::generate(), ulid::Ulid::generate());
                    ((*u).to_owned(), password.to_lowercase())
                })
                .collect(),
        );
        server.resume().await;
        server
    }

    /// The URL that logs in as `user` (a secured server only).
    pub fn url_as(&self, user: &str) -> String {
        let password = self
            .passwords
            .as_ref()
            .and_then(|p| p.get(user))
            .unwrap_or_else(|| panic!("no user {user} on this server"));
        let scheme = match self.kind {
            ServerKind::Nats => "nats",
            ServerKind::Valkey => "redis",
        };
        format!("{scheme}://{user}:{password}@127.0.0.1:{}", self.port)
    }

    /// The password of `user` (a secured server only).
    pub fn password(&self, user: &str) -> &str {
        self.passwords
            .as_ref()
            .and_then(|p| p.get(user))
            .unwrap_or_else(|| panic!("no user {user} on this server"))
    }

    /// What the server has logged so far (a secured server only; empty
    /// otherwise).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `nats://127.0.0.1:<port>` or `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        match self.kind {
            ServerKind::Nats => format!("nats://127.0.0.1:{}", self.port),
            ServerKind::Valkey => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// Sends one command to this Valkey server and returns the first line of
    /// its reply (`+OK`, `-ERR ...`): enough for `CONFIG SET` and the like.
    pub async fn valkey_command(&self, args: &[&str]) -> String {
        assert_eq!(self.kind, ServerKind::Valkey, "not a Valkey server");
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))
            .await
            .expect("connect to valkey");
        stream
            .write_all(request.as_bytes())
            .await
            .expect("send to valkey");
        let mut line = String::new();
        BufReader::new(stream)
            .read_line(&mut line)
            .await
            .expect("valkey reply");
        line.trim_end().to_owned()
    }

    /// Logs in as `user` (with no user: not at all), sends each command on
    /// the same connection and returns each whole reply rendered as text:
    /// `+OK`, `-NOPERM ...`, `:1`, a bulk string's content, `(nil)`, or a
    /// list's items in brackets.
    pub async fn valkey_session(&self, user: Option<&str>, commands: &[&[&str]]) -> Vec<String> {
        assert_eq!(self.kind, ServerKind::Valkey, "not a Valkey server");
        let stream = TcpStream::connect(("127.0.0.1", self.port))
            .await
            .expect("connect to valkey");
        let mut stream = BufReader::new(stream);
        if let Some(user) = user {
            let auth = ["AUTH", user, self.password(user)];
            stream
                .get_mut()
                .write_all(&resp_command(&auth))
                .await
                .expect("send to valkey");
            let reply = read_resp(&mut stream).await;
            assert_eq!(reply, "+OK", "AUTH as {user}");
        }
        let mut replies = Vec::new();
        for command in commands {
            stream
                .get_mut()
                .write_all(&resp_command(command))
                .await
                .expect("send to valkey");
            replies.push(read_resp(&mut stream).await);
        }
        replies
    }

    /// Kills the process (like a crash: no goodbye to clients).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and data directory.
    pub async fn resume(&mut self) {
        assert!(self.child.is_none(), "server already running");
        let port = self.port.to_string();
        let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
        let mut command = match self.kind {
            ServerKind::Nats => {
                let mut c = Command::new(tool("nats-server"));
                if let Some(passwords) = &self.passwords {
                    c.arg("-c").arg(config.join("nats/auth.conf"));
                    c.arg("-l").arg(self.dir.join("server.log"));
                    for (user, password) in passwords {
                        c.env(format!("NATS_{}_PASSWORD", user.to_uppercase()), password);
                    }
                }
                c.args(["-js", "-a", "127.0.0.1", "-p", &port, "-sd"])
                    .arg(&self.dir);
                c
            }
            ServerKind::Valkey => {
                let mut c = Command::new(tool("valkey-server"));
                if let Some(passwords) = &self.passwords {
                    // As every deployment does: the template with the
                    // passwords filled in is the configuration file.
                    let mut acl = std::fs::read_to_string(config.join("valkey/acl.conf"))
                        .expect("config/valkey/acl.conf");
                    for (user, password) in passwords {
                        let placeholder = format!("@@VALKEY_{}_PASSWORD@@", user.to_uppercase());
                        acl = acl.replace(&placeholder, password);
                    }
                    assert!(!acl.contains("@@"), "unreplaced placeholder in acl.conf");
                    let rendered = self.dir.join("acl.conf");
                    std::fs::write(&rendered, acl).expect("write acl.conf");
                    c.arg(rendered);
                    c.arg("--logfile").arg(self.dir.join("server.log"));
                }
                c.args([
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    &port,
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                ])
                .arg(&self.dir);
                c
            }
        };
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{:?} server starts: {e}", self.kind));
        self.child = Some(child);
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        // Generous: a loaded CI machine can take seconds to start JetStream.
        for _ in 0..800 {
            if TcpStream::connect(addr).await.is_ok() {
                return;
            }
            if let Some(Ok(Some(exit))) = self.child.as_mut().map(Child::try_wait) {
                panic!(
                    "{:?} server exited at start ({exit}); port {} taken?",
                    self.kind, self.port
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{:?} server did not listen on {addr}", self.kind);
    }
}

/// One command in RESP.
fn resp_command(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Reads one whole RESP2/RESP3 reply and renders it as text.
fn read_resp<'a>(
    stream: &'a mut BufReader<TcpStream>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = String> + Send + 'a>> {
    Box::pin(async move {
        use tokio::io::AsyncReadExt;
        let mut line = String::new();
        stream.read_line(&mut line).await.expect("valkey reply");
        let line = line.trim_end().to_owned();
        let (kind, rest) = line.split_at(1.min(line.len()));
        match kind {
            "$" => {
                let Ok(n) = rest.parse::<usize>() else {
                    return "(nil)".to_owned();
                };
                let mut data = vec![0; n + 2];
                stream.read_exact(&mut data).await.expect("bulk reply");
                String::from_utf8_lossy(&data[..n]).into_owned()
            }
            "*" => {
                let Ok(n) = rest.parse::<usize>() else {
                    return "(nil)".to_owned();
                };
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(read_resp(stream).await);
                }
                format!("[{}]", items.join(", "))
            }
            "_" => "(nil)".to_owned(),
            _ => line,
        }
    })
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Forwards a loopback port to a target until cut: [`TcpProxy::cut`] closes
/// the listener and every open connection, so the target looks gone to
/// clients while it keeps running for everyone else; [`TcpProxy::heal`]
/// opens the same port again.
pub struct TcpProxy {
    addr: SocketAddr,
    target: SocketAddr,
    cut: CancellationToken,
    task: JoinHandle<()>,
}

impl TcpProxy {
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy binds");
        let addr = listener.local_addr().expect("proxy addr");
        let cut = CancellationToken::new();
        let task = Self::forward(listener, target, cut.clone());
        Self {
            addr,
            target,
            cut,
            task,
        }
    }

    /// Listens on the proxy's port again after [`TcpProxy::cut`].
    pub async fn heal(&mut self) {
        assert!(self.cut.is_cancelled(), "the proxy is not cut");
        let listener = TcpListener::bind(self.addr)
            .await
            .expect("proxy binds its port again");
        self.cut = CancellationToken::new();
        self.task = Self::forward(listener, self.target, self.cut.clone());
    }

    fn forward(
        listener: TcpListener,
        target: SocketAddr,
        stop: CancellationToken,
    ) -> JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                let (mut inbound, _) = tokio::select! {
                    () = stop.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok(a) => a,
                        Err(_) => continue,
                    },
                };
                let stop = stop.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        () = stop.cancelled() => {},
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {},
                    }
                });
            }
        })
    }

    /// The proxy's own address (point clients here).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes the listener and every connection through it.
    pub async fn cut(&self) {
        self.cut.cancel();
        // Wait for the accept loop to drop the listener.
        while !self.task.is_finished() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut.cancel();
    }
}

/// The text of the one QR code in an image of `content_type` (`image/png`,
/// or `image/svg+xml` drawn by a real SVG renderer); panics when the image
/// does not read or holds no single decodable code.
pub fn decode_qr(content_type: &str, bytes: &[u8]) -> String {
    let grey = match content_type {
        "image/png" => image::load_from_memory(bytes)
            .expect("the PNG reads")
            .to_luma8(),
        "image/svg+xml" => {
            let tree = resvg::usvg::Tree::from_data(bytes, &resvg::usvg::Options::default())
                .expect("the SVG parses");
            let size = tree.size().to_int_size();
            let mut pixmap = resvg::tiny_skia::Pixmap::new(size.width(), size.height())
                .expect("the SVG has a size");
            resvg::render(
                &tree,
                resvg::tiny_skia::Transform::default(),
                &mut pixmap.as_mut(),
            );
            // Transparent pixels (nothing drawn) read as light.
            let luma = pixmap
                .pixels()
                .iter()
                .map(|p| {
                    let c = p.demultiply();
                    let alpha = u32::from(c.alpha());
                    let grey =
                        (u32::from(c.red()) + u32::from(c.green()) + u32::from(c.blue())) / 3;
                    u8::try_from((grey * alpha + 255 * (255 - alpha)) / 255).unwrap_or(255)
                })
                .collect();
            image::GrayImage::from_raw(size.width(), size.height(), luma)
                .expect("one byte per pixel")
        }
        other => panic!("not a QR code image type: {other}"),
    };
    let mut prepared = rqrr::PreparedImage::prepare_from_greyscale(
        grey.width() as usize,
        grey.height() as usize,
        |x, y| grey.get_pixel(x as u32, y as u32).0[0],
    );
    let grids = prepared.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in the image");
    let (_, text) = grids[0].decode().expect("the QR code decodes");
    text
}
