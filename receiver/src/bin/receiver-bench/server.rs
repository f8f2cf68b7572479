//! The receivers under test and the clients that load them: a receiver on this process's
//! runtime with a fresh database per scenario (a temporary redb file, or a new PostgreSQL
//! database created through `--postgres`'s admin URL and dropped after), and one
//! keep-alive HTTP/1.1 connection per client.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use hyper::StatusCode;
use hyper::body::Bytes;
use receiver::config::{Config, Database, PgUrl};
use receiver::store::Compression;

use super::{HMAC_KEY, READ_TOKEN};

/// Which backend a scenario runs on.
#[derive(Debug, Clone)]
pub enum Backend {
    Redb,
    /// An admin URL (a database the benchmark may create databases from).
    Postgres(String),
}

impl Backend {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Redb => "redb",
            Self::Postgres(_) => "postgres",
        }
    }
}

/// What to remove when the scenario ends.
pub enum Scratch {
    File(PathBuf),
    Database { admin: String, name: String },
}

/// A receiver running on this runtime with a fresh database.
pub struct Server {
    pub addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    scratch: Scratch,
}

/// Runs one SQL statement on `url` (the benchmark's own admin work, not the receiver's).
pub async fn admin_sql(url: &str, sql: &str) -> anyhow::Result<()> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .with_context(|| {
            format!(
                "connecting to {}",
                PgUrl::parse(url).map_or_else(|e| e, |u| u.to_string())
            )
        })?;
    let conn = tokio::spawn(connection);
    client
        .batch_execute(sql)
        .await
        .with_context(|| sql.to_owned())?;
    drop(client);
    let _ = conn.await;
    Ok(())
}

/// `url` with its database name replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let base = match base[after_scheme..].find('/') {
        Some(i) => &base[..after_scheme + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

/// A fresh database for a scenario on `backend`, and what to remove after it.
pub async fn scratch(backend: &Backend) -> anyhow::Result<(Database, Scratch)> {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos();
    Ok(match backend {
        Backend::Redb => {
            let path = std::env::temp_dir().join(format!(
                "receiver-bench-{}-{nanos}.redb",
                std::process::id()
            ));
            (Database::File(path.clone()), Scratch::File(path))
        }
        Backend::Postgres(admin) => {
            let name = format!("receiver_bench_{}_{nanos}", std::process::id());
            admin_sql(admin, &format!("CREATE DATABASE {name}")).await?;
            let url = with_database(admin, &name);
            let db = Database::Postgres(PgUrl::parse(&url).map_err(anyhow::Error::msg)?);
            (
                db,
                Scratch::Database {
                    admin: admin.clone(),
                    name,
                },
            )
        }
    })
}

impl Scratch {
    /// Removes the file or drops the database.
    pub async fn remove(&self) -> anyhow::Result<()> {
        match self {
            Scratch::File(path) => {
                let _ = std::fs::remove_file(path);
            }
            Scratch::Database { admin, name } => {
                admin_sql(
                    admin,
                    &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                )
                .await?;
            }
        }
        Ok(())
    }
}

impl Server {
    pub async fn start(
        rt: &tokio::runtime::Handle,
        backend: &Backend,
        group_commit: bool,
    ) -> anyhow::Result<Self> {
        let (db, scratch) = scratch(backend).await?;
        Self::start_on(rt, db, scratch, group_commit, Compression::default(), false).await
    }

    /// A receiver on `db` (which may hold runs already), removing `scratch` when stopped.
    pub async fn start_on(
        rt: &tokio::runtime::Handle,
        db: Database,
        scratch: Scratch,
        group_commit: bool,
        compression: Compression,
        compress_in_writer: bool,
    ) -> anyhow::Result<Self> {
        let mut config = Config::new(db, READ_TOKEN, HMAC_KEY);
        config.group_commit = group_commit;
        config.compression = compression;
        config.compress_in_writer = compress_in_writer;
        // Enough connections for the readers while the writer holds one.
        config.db_pool_size = 32;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = rt.spawn(receiver::server::run(config, listener, async {
            let _ = rx.await;
        }));
        let server = Self {
            addr,
            stop: Some(tx),
            task,
            scratch,
        };
        for _ in 0..500 {
            if let Ok(mut c) = Client::connect(addr).await {
                if c.send("GET", "/healthz", None, None).await.map(|(s, _)| s) == Ok(StatusCode::OK)
                {
                    return Ok(server);
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        bail!("receiver did not start")
    }

    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        (&mut self.task).await??;
        self.scratch.remove().await
    }
}

/// One keep-alive HTTP/1.1 connection (the workspace's HTTP client).
pub struct Client {
    pub conn: http_client::Connection,
    pub addr: std::net::SocketAddr,
}

impl Client {
    pub async fn connect(addr: std::net::SocketAddr) -> anyhow::Result<Self> {
        let conn = http_client::Connection::open(addr, Duration::from_secs(30)).await?;
        Ok(Self { conn, addr })
    }

    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        auth: Option<&str>,
        body: Option<Bytes>,
    ) -> Result<(StatusCode, Bytes), String> {
        let method =
            http_client::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
        let mut req = http_client::Request::to(method, self.addr, path).header("host", "bench");
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = self.conn.send(req).await.map_err(|e| e.to_string())?;
        Ok((resp.status, resp.body))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_names_are_replaced() {
        assert_eq!(
            super::with_database("postgres://u:p@h:5432/postgres?sslmode=disable", "b"),
            "postgres://u:p@h:5432/b?sslmode=disable"
        );
        assert_eq!(super::with_database("postgres://h", "b"), "postgres://h/b");
    }
}
