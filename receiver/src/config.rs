//! Command line and environment: the seed's flags plus the additions, and their checks.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use clap::{Parser, ValueEnum};
use summary::duration::parse_duration;

use crate::auth::MIN_SECRET_BYTES;

/// Default `--max-response-bytes`: 8 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;
/// Default `--max-connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `receiver --version`: the version and the commit it was built from, e.g.
/// `0.1.0 (commit 3f2a9c1d0b4e)` (see build.rs).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("RECEIVER_VERSION_DETAIL"),
    ")"
);

/// The receiver's command line.
#[derive(Parser, Clone)]
#[command(
    name = "receiver",
    version = VERSION,
    about = "Stores CI run summaries and answers queries"
)]
pub struct Cli {
    /// HTTP listen address; `:PORT` means every interface, port 0 a free port.
    #[arg(long, default_value = ":8080")]
    pub addr: String,
    /// Once the database is open and requests are answered, write the address actually
    /// listened on (`127.0.0.1:43127`, one line) to this file, replacing it atomically
    /// (for `--addr=...:0`).
    #[arg(long, value_name = "PATH")]
    pub addr_file: Option<PathBuf>,
    /// Where runs are stored: a redb file (the default), or a PostgreSQL URL
    /// (`postgres://user:password@host:5432/dbname`; best given in RECEIVER_DB, so the
    /// password stays out of the process list).
    #[arg(
        long,
        env = "RECEIVER_DB",
        hide_env_values = true,
        default_value = "metrics.db"
    )]
    pub db: String,
    /// PostgreSQL only: most connections each receiver opens.
    #[arg(long, default_value_t = 16)]
    pub db_pool_size: usize,
    /// PostgreSQL only: how long to wait for a connection (from the pool, or a new one)
    /// before answering 503 (positive, e.g. `5s`).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub db_timeout: Duration,
    /// Pre-shared token for the read and admin endpoints (required, at least 16 bytes).
    #[arg(long, env = "RECEIVER_READ_TOKEN", hide_env_values = true)]
    pub read_token: Option<String>,
    /// Secret key for push-token generation and validation (required, at least 16 bytes).
    #[arg(long, env = "RECEIVER_HMAC_KEY", hide_env_values = true)]
    pub hmac_key: Option<String>,
    /// Largest accepted request body, in bytes.
    #[arg(long, default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Largest query answer, in bytes: a page stops before the run that would go over it
    /// (the cursor gives the rest); a single run larger than this is still answered.
    #[arg(long, default_value_t = DEFAULT_MAX_RESPONSE_BYTES)]
    pub max_response_bytes: usize,
    /// Most connections served at once; beyond it a new connection is answered 503
    /// `{"error":"too many connections"}` and closed.
    #[arg(long, default_value_t = DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Delete runs received more than this many days ago (kept forever if unset).
    #[arg(long)]
    pub retention_days: Option<u32>,
    /// How long in-flight requests may take to finish after SIGTERM/SIGINT (positive, e.g.
    /// `500ms`, `10s`, `1m 30s`, or plain seconds).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
    /// How long a client may take to send a request's headers (positive).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: Duration,
    /// How long a client may take to send a request's body (positive).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub body_timeout: Duration,
    /// Log level or tracing filter (`info`, `debug`, `receiver=debug,hyper=info`, ...).
    #[arg(long, default_value = "info")]
    pub log_level: String,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Commit every push in a transaction of its own (the seed's design; a benchmark
    /// baseline, much slower under concurrency).
    #[arg(long)]
    pub no_group_commit: bool,
    /// How new runs are stored: `zstd-dict` (zstd with the dictionary shipped in the
    /// binary), `zstd`, or `off` (plain JSON, as before). Rows of every format are read.
    #[arg(long, value_enum, default_value = "zstd-dict")]
    pub store_compression: crate::store::Compression,
    /// Compress new runs in the store's writer instead of each request's task (the storage
    /// benchmark compares both; off by default).
    #[arg(long)]
    pub store_compress_in_writer: bool,
    /// Runner classes the sizing endpoint picks from, `NAME=CPU/MEMORY` separated by commas
    /// (`small=2c/4Gi,medium=4c/8Gi,large=8c/16Gi`): its answer names the smallest that fits.
    #[arg(long, env = "RECEIVER_RUNNER_CLASSES", value_name = "CLASSES")]
    pub runner_classes: Option<String>,
}

impl std::fmt::Debug for Cli {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cli")
            .field("addr", &self.addr)
            .field(
                "db",
                &Database::parse(&self.db).map_or_else(|e| e, |d| d.to_string()),
            )
            .field("addr_file", &self.addr_file)
            .field(
                "read_token",
                &self.read_token.as_ref().map(|_| "<redacted>"),
            )
            .field("hmac_key", &self.hmac_key.as_ref().map(|_| "<redacted>"))
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("max_connections", &self.max_connections)
            .field("retention_days", &self.retention_days)
            .field("runner_classes", &self.runner_classes)
            .finish_non_exhaustive()
    }
}

/// Resolves `--addr`: `:8080` is every interface (`0.0.0.0:8080`), anything else is a
/// `host:port`.
pub fn resolve_addr(addr: &str) -> Result<SocketAddr, String> {
    let full = if addr.starts_with(':') {
        format!("0.0.0.0{addr}")
    } else {
        addr.to_string()
    };
    full.to_socket_addrs()
        .map_err(|e| format!("invalid --addr {addr:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("--addr {addr:?} resolves to no address"))
}

/// A secret that never prints.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// The secret's bytes.
    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where runs are stored (`--db`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// An embedded redb file.
    File(PathBuf),
    /// A PostgreSQL database.
    Postgres(PgUrl),
}

impl From<PathBuf> for Database {
    fn from(path: PathBuf) -> Self {
        Self::File(path)
    }
}

impl Database {
    /// A `postgres://` or `postgresql://` URL is PostgreSQL; anything else a file path.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            PgUrl::parse(text).map(Self::Postgres)
        } else if text.is_empty() {
            Err("--db must not be empty".into())
        } else {
            Ok(Self::File(PathBuf::from(text)))
        }
    }
}

impl std::fmt::Display for Database {
    /// The file's path, or the URL without its password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Postgres(url) => write!(f, "{url}"),
        }
    }
}

/// A PostgreSQL URL; printed (and debugged) without its password.
#[derive(Clone, PartialEq, Eq)]
pub struct PgUrl(String);

impl PgUrl {
    /// Checks that the driver understands it; the error never contains the password.
    pub fn parse(text: &str) -> Result<Self, String> {
        text.parse::<tokio_postgres::Config>().map_err(|_| {
            format!(
                "--db: {} is not a PostgreSQL URL the driver understands \
                     (postgres://user:password@host:port/dbname?options)",
                Self(text.to_owned())
            )
        })?;
        Ok(Self(text.to_owned()))
    }

    /// The URL itself, password included: for the driver only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for PgUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `scheme://user:password@host...`: the password goes.
        let (scheme, rest) = self.0.split_once("://").unwrap_or(("postgres", &self.0));
        match rest.split_once('@') {
            Some((userinfo, host)) => {
                let user = userinfo.split(':').next().unwrap_or("");
                let hidden = if userinfo.contains(':') {
                    ":<redacted>"
                } else {
                    ""
                };
                write!(f, "{scheme}://{user}{hidden}@{host}")
            }
            None => write!(f, "{scheme}://{rest}"),
        }
    }
}

impl std::fmt::Debug for PgUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgUrl({self})")
    }
}

/// Everything the server needs, checked.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where runs are stored.
    pub db: Database,
    /// PostgreSQL: connections per receiver, and how long to wait for one.
    pub db_pool_size: usize,
    pub db_timeout: Duration,
    /// Where to write the listening address once ready (`--addr-file`), if anywhere.
    pub addr_file: Option<PathBuf>,
    /// Read/admin token.
    pub read_token: Secret,
    /// HMAC key for push tokens.
    pub hmac_key: Secret,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Largest query answer (`--max-response-bytes`); at least one run is always answered.
    pub max_response_bytes: usize,
    /// Most connections served at once (`--max-connections`).
    pub max_connections: usize,
    /// Runs older than this are pruned.
    pub retention: Option<Duration>,
    /// Deadline for in-flight requests at shutdown.
    pub shutdown_timeout: Duration,
    /// Deadline for a request's headers.
    pub header_timeout: Duration,
    /// Deadline for a request's body.
    pub body_timeout: Duration,
    /// Whether concurrent pushes share write transactions.
    pub group_commit: bool,
    /// How new runs are stored (`--store-compression`).
    pub compression: crate::store::Compression,
    /// Whether the writer compresses (`--store-compress-in-writer`).
    pub compress_in_writer: bool,
    /// Runner classes for sizing answers (`--runner-classes`), smallest first.
    pub runner_classes: Vec<summary::sizing::RunnerClass>,
    /// The wall clock: receive times, retention cutoffs, token expiry. Always
    /// [`SystemTime::now`] from the command line; tests inject a shifted one to age runs
    /// and tokens without waiting.
    pub clock: fn() -> SystemTime,
}

fn secret(value: Option<&String>, flag: &str, env: &str) -> Result<Secret, String> {
    match value {
        None => Err(format!("{flag} (or {env}) is required")),
        Some(v) if v.len() < MIN_SECRET_BYTES => Err(format!(
            "{flag} (or {env}) is too weak: it must be at least {MIN_SECRET_BYTES} bytes long"
        )),
        Some(v) => Ok(Secret(v.clone())),
    }
}

impl Config {
    /// Checks the command line; the error says which flag is wrong and why, and never
    /// contains a secret.
    pub fn from_cli(cli: &Cli) -> Result<Self, String> {
        let read_token = secret(
            cli.read_token.as_ref(),
            "--read-token",
            "RECEIVER_READ_TOKEN",
        )?;
        let hmac_key = secret(cli.hmac_key.as_ref(), "--hmac-key", "RECEIVER_HMAC_KEY")?;
        if read_token.expose() == hmac_key.expose() {
            return Err("--read-token and --hmac-key must be different secrets".into());
        }
        if cli.max_body_bytes == 0 {
            return Err("--max-body-bytes must be positive".into());
        }
        if cli.max_response_bytes == 0 {
            return Err("--max-response-bytes must be positive".into());
        }
        if cli.max_connections == 0 {
            return Err("--max-connections must be positive".into());
        }
        if cli.db_pool_size == 0 {
            return Err("--db-pool-size must be positive".into());
        }
        Ok(Self {
            db: Database::parse(&cli.db)?,
            db_pool_size: cli.db_pool_size,
            db_timeout: cli.db_timeout,
            addr_file: cli.addr_file.clone(),
            read_token,
            hmac_key,
            max_body_bytes: cli.max_body_bytes,
            max_response_bytes: cli.max_response_bytes,
            max_connections: cli.max_connections,
            retention: cli
                .retention_days
                .map(|d| Duration::from_secs(u64::from(d) * 86_400)),
            shutdown_timeout: cli.shutdown_timeout,
            header_timeout: cli.header_timeout,
            body_timeout: cli.body_timeout,
            group_commit: !cli.no_group_commit,
            compression: cli.store_compression,
            compress_in_writer: cli.store_compress_in_writer,
            runner_classes: match &cli.runner_classes {
                Some(text) => summary::sizing::quantity::parse_classes(text)
                    .map_err(|e| format!("--runner-classes: {e}"))?,
                None => Vec::new(),
            },
            clock: SystemTime::now,
        })
    }

    /// A configuration for tests and the benchmark: the given database and secrets,
    /// defaults otherwise.
    pub fn new(db: impl Into<Database>, read_token: &str, hmac_key: &str) -> Self {
        Self {
            db: db.into(),
            db_pool_size: 16,
            db_timeout: Duration::from_secs(5),
            addr_file: None,
            read_token: Secret(read_token.into()),
            hmac_key: Secret(hmac_key.into()),
            max_body_bytes: 1024 * 1024,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            retention: None,
            shutdown_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            group_commit: true,
            compression: crate::store::Compression::default(),
            compress_in_writer: false,
            runner_classes: Vec::new(),
            clock: SystemTime::now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("receiver").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn version_names_the_commit() {
        use clap::CommandFactory;
        let line = Cli::command().render_version();
        assert!(
            line.starts_with(&format!("receiver {} (commit ", env!("CARGO_PKG_VERSION")))
                && line.trim_end().ends_with(')'),
            "{line:?}"
        );
    }

    #[test]
    fn databases_and_hidden_passwords() {
        assert_eq!(
            Database::parse("metrics.db").unwrap(),
            Database::File("metrics.db".into())
        );
        let url = "postgres://receiver:s3cret@db.internal:5432/ci?connect_timeout=3";
        let Database::Postgres(pg) = Database::parse(url).unwrap() else {
            panic!("not PostgreSQL");
        };
        assert_eq!(pg.expose(), url);
        for shown in [
            pg.to_string(),
            format!("{pg:?}"),
            Database::Postgres(pg.clone()).to_string(),
        ] {
            assert!(!shown.contains("s3cret"), "{shown}");
            assert!(
                shown.contains("receiver:<redacted>@db.internal:5432/ci"),
                "{shown}"
            );
        }
        assert_eq!(
            PgUrl::parse("postgresql://db/ci").unwrap().to_string(),
            "postgresql://db/ci"
        );
        let err = Database::parse("postgres://u:pw@h:notaport/db").unwrap_err();
        assert!(
            err.contains("not a PostgreSQL URL") && !err.contains("pw@"),
            "{err}"
        );
        assert!(Database::parse("").is_err());
        // The command line's Debug (logged at start) hides it too.
        let c = cli(&["--db", url]);
        assert!(!format!("{c:?}").contains("s3cret"));
        let config = Config::from_cli(&Cli {
            read_token: Some("read-0123456789abcdef".into()),
            hmac_key: Some("hmac-0123456789abcdef".into()),
            ..c
        })
        .unwrap();
        assert!(!format!("{config:?}").contains("s3cret"));
    }

    #[test]
    fn durations_are_positive() {
        let c = cli(&["--shutdown-timeout", "1m 30s", "--body-timeout", "1.5"]);
        assert_eq!(c.shutdown_timeout, Duration::from_secs(90));
        assert_eq!(c.body_timeout, Duration::from_millis(1500));
        assert_eq!(c.header_timeout, Duration::from_secs(10));
        for bad in ["0s", "0", "-1s", "soon"] {
            let err =
                Cli::try_parse_from(["receiver".to_owned(), format!("--header-timeout={bad}")])
                    .map(|_| ())
                    .unwrap_err()
                    .to_string();
            assert!(
                err.contains("--header-timeout") && err.contains(bad),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn limits_are_positive() {
        let (read, key) = ("read-token-0123456789", "hmac-key-0123456789");
        let c = cli(&[
            "--read-token",
            read,
            "--hmac-key",
            key,
            "--max-connections=16",
            "--max-response-bytes=4096",
        ]);
        let config = Config::from_cli(&c).unwrap();
        assert_eq!(
            (config.max_connections, config.max_response_bytes),
            (16, 4096)
        );
        for flag in ["--max-connections", "--max-response-bytes"] {
            let c = cli(&[
                "--read-token",
                read,
                "--hmac-key",
                key,
                &format!("{flag}=0"),
            ]);
            let err = Config::from_cli(&c).unwrap_err();
            assert!(err.contains(flag), "{err}");
        }
    }

    #[test]
    fn addr_file_flag() {
        assert_eq!(cli(&[]).addr_file, None);
        let c = cli(&[
            "--addr-file",
            "/tmp/a",
            "--read-token",
            "read-token-0123456789",
        ]);
        assert_eq!(c.addr_file.as_deref(), Some(std::path::Path::new("/tmp/a")));
    }

    #[test]
    fn addr_forms() {
        assert_eq!(resolve_addr(":8080").unwrap().to_string(), "0.0.0.0:8080");
        assert_eq!(
            resolve_addr("127.0.0.1:0").unwrap().to_string(),
            "127.0.0.1:0"
        );
        assert!(resolve_addr("nonsense").is_err());
    }

    #[test]
    fn secrets_are_required_strong_and_unprinted() {
        let strong_read = "read-token-0123456789";
        let strong_key = "hmac-key-0123456789";
        let err = Config::from_cli(&cli(&["--hmac-key", strong_key])).unwrap_err();
        assert!(
            err.contains("--read-token") && err.contains("RECEIVER_READ_TOKEN"),
            "{err}"
        );
        let err = Config::from_cli(&cli(&[
            "--read-token",
            strong_read,
            "--hmac-key",
            "short-secret",
        ]))
        .unwrap_err();
        assert!(
            err.contains("--hmac-key") && !err.contains("short-secret"),
            "{err}"
        );
        let err = Config::from_cli(&cli(&[
            "--read-token",
            strong_read,
            "--hmac-key",
            strong_read,
        ]))
        .unwrap_err();
        assert!(!err.contains(strong_read), "{err}");
        let c = cli(&["--read-token", strong_read, "--hmac-key", strong_key]);
        let config = Config::from_cli(&c).unwrap();
        let printed = format!("{config:?} {c:?}");
        assert!(
            !printed.contains(strong_read) && !printed.contains(strong_key),
            "{printed}"
        );
        assert_eq!(config.max_body_bytes, 1 << 20);
        assert_eq!(config.max_response_bytes, 8 << 20);
        assert_eq!(config.max_connections, 1024);
        assert!(config.group_commit);
    }
}
