//! SMTP conversations on sockets of our own, with `TCP_NODELAY`, for plain
//! and STARTTLS relays. lettre writes a message and its final `.` in two
//! writes; on a socket where Nagle's algorithm holds small writes, the `.`
//! waits for the server's delayed acknowledgement (40 ms on Linux), which
//! made every message cost about 46 ms of a connection. lettre still speaks
//! SMTP (greeting, EHLO, STARTTLS, AUTH, the message); only the socket is
//! ours. Idle conversations are kept for the next messages, as lettre's
//! pool does.

use std::time::Duration;

use lettre::Message;
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
    /// Conversations between two messages, at most `keep_idle`.
    idle: Mutex<Vec<AsyncSmtpConnection>>,
    keep_idle: usize,
}

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

    pub async fn send(&self, message: &Message) -> Result<(), String> {
        let mut conn = match self.reuse().await {
            Some(conn) => conn,
            None => self.connect().await?,
        };
        match timeout(self.timeout, conn.send(message.envelope(), &message.formatted())).await {
            Ok(Ok(_)) => {
                let mut idle = self.idle.lock().await;
                if idle.len() < self.keep_idle {
                    idle.push(conn);
                }
                Ok(())
            }
            Ok(Err(e)) => {
                conn.abort().await;
                Err(e.to_string())
            }
            Err(_) => Err(format!("no answer within {} s", self.timeout.as_secs())),
        }
    }

    /// An idle conversation the server still holds open (a `NOOP` answered).
    async fn reuse(&self) -> Option<AsyncSmtpConnection> {
        loop {
            let mut conn = self.idle.lock().await.pop()?;
            if timeout(self.timeout, conn.test_connected()).await.unwrap_or(false) {
                return Some(conn);
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
