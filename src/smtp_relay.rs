//! SMTP conversations on sockets of our own, with `TCP_NODELAY`, for plain
//! and STARTTLS relays. lettre writes a message and its final `.` in two
//! writes; on a socket where Nagle's algorithm holds small writes, the `.`
//! waits for the server's delayed acknowledgement (40 ms on Linux), which
//! made every message cost about 46 ms of a connection. lettre still speaks
//! SMTP (greeting, EHLO, STARTTLS, AUTH, the message); only the socket is
//! ours. Idle conversations are kept for the next messages, as lettre's
//! pool does.

use std::time::{Duration, Instant};

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio::time::timeout;

pub struct Relay {
    host: String,
    port: u16,
    starttls: bool,
    credentials: Option<Credentials>,
    hello: ClientId,
    /// Bound on connecting, and on each message.
    timeout: Duration,
    /// Conversations between two messages, at most `keep_idle`, with the
    /// end of their last message.
    idle: Mutex<Vec<(AsyncSmtpConnection, Instant)>>,
    keep_idle: usize,
}

/// A conversation idle for less than this is taken again without a `NOOP`
/// first: in a run of messages the `NOOP` was one round trip in five. Should
/// the server have closed it all the same, the message goes again on a new
/// conversation (a network error only, never an answer of the server's).
const TRUSTED_IDLE: Duration = Duration::from_secs(1);

impl Relay {
    pub fn new(
        (host, port): (String, u16),
        starttls: bool,
        credentials: Option<Credentials>,
        timeout: Duration,
        keep_idle: usize,
    ) -> Self {
        Relay {
            host,
            port,
            starttls,
            credentials,
            hello: ClientId::default(),
            timeout,
            idle: Mutex::new(Vec::new()),
            keep_idle,
        }
    }

    /// Sends a message already formatted (`Message::formatted`).
    pub async fn send(&self, envelope: &Envelope, formatted: &[u8]) -> Result<(), String> {
        let (conn, untested) = match self.reuse().await {
            Some(reused) => reused,
            None => (self.connect().await?, false),
        };
        match self.send_on(conn, envelope, formatted).await {
            Err(Failure::Network(_)) if untested => {
                let conn = self.connect().await?;
                self.send_on(conn, envelope, formatted).await.map_err(Failure::into_message)
            }
            outcome => outcome.map_err(Failure::into_message),
        }
    }

    async fn send_on(
        &self,
        mut conn: AsyncSmtpConnection,
        envelope: &Envelope,
        formatted: &[u8],
    ) -> Result<(), Failure> {
        match timeout(self.timeout, conn.send(envelope, formatted)).await {
            Ok(Ok(_)) => {
                let mut idle = self.idle.lock().await;
                if idle.len() < self.keep_idle {
                    idle.push((conn, Instant::now()));
                }
                Ok(())
            }
            Ok(Err(e)) => {
                conn.abort().await;
                // An answer has a code; a conversation the server closed
                // reads as an "incomplete response" with none.
                let answered = e.status().is_some() || e.is_client();
                Err(if answered { Failure::Answered(e.to_string()) } else { Failure::Network(e.to_string()) })
            }
            Err(_) => Err(Failure::Answered(format!("no answer within {} s", self.timeout.as_secs()))),
        }
    }

    /// An idle conversation the server still holds open: used within
    /// [`TRUSTED_IDLE`] (true: not tested), or answering a `NOOP`.
    async fn reuse(&self) -> Option<(AsyncSmtpConnection, bool)> {
        loop {
            let (mut conn, since) = self.idle.lock().await.pop()?;
            if since.elapsed() < TRUSTED_IDLE {
                return Some((conn, true));
            }
            if timeout(self.timeout, conn.test_connected()).await.unwrap_or(false) {
                return Some((conn, false));
            }
        }
    }

    async fn connect(&self) -> Result<AsyncSmtpConnection, String> {
        let opening = async {
            let tcp = TcpStream::connect((self.host.as_str(), self.port)).await.map_err(|e| e.to_string())?;
            tcp.set_nodelay(true).map_err(|e| e.to_string())?;
            let mut conn = AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello)
                .await
                .map_err(|e| e.to_string())?;
            if self.starttls {
                let tls = TlsParameters::new(self.host.clone()).map_err(|e| e.to_string())?;
                conn.starttls(tls, &self.hello).await.map_err(|e| e.to_string())?;
            }
            if let Some(credentials) = &self.credentials {
                conn.auth(&[Mechanism::Plain, Mechanism::Login], credentials).await.map_err(|e| e.to_string())?;
            }
            Ok(conn)
        };
        timeout(self.timeout, opening)
            .await
            .map_err(|_| format!("no connection within {} s", self.timeout.as_secs()))?
    }
}

/// Why a message did not go: the server answered (or did not within the
/// timeout), or the conversation broke.
enum Failure {
    Answered(String),
    Network(String),
}

impl Failure {
    fn into_message(self) -> String {
        match self {
            Failure::Answered(m) | Failure::Network(m) => m,
        }
    }
}
