//! Configuration for agents and clients run from a terminal.
//!
//! Every setting comes from, in order of precedence: a command-line flag, an environment
//! variable, the configuration file (`--config`, or `<config dir>/runtime-agents/config.toml`
//! when it exists), then a default. The client id and token may also come from the
//! credentials file (see [`crate::auth`]). Invalid values name the flag and the environment
//! variable; binaries exit with code 2 on them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use runtime_core::AgentOptions;
use serde::Deserialize;

use crate::auth::{AuthToken, CredentialsError, credentials_path, read_credentials};
use crate::files::{MAX_CONFIG_FILE, SmallFileError, read_small_text, toml_error_without_values};

/// Where the notebook is and who is asking: what agents and clients share.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct CommonArgs {
    /// The notebook to serve or use [default: default]
    #[arg(long, env = "RUNTIME_NOTEBOOK", value_name = "ID")]
    pub notebook: Option<String>,
    /// The store: a SQLite file (PATH or sqlite:PATH) or a hub (ws://HOST:PORT, with the token) [default: runtime-agents/notebooks.db in the user data directory]
    #[arg(long, env = "RUNTIME_STORE", value_name = "PATH|URL")]
    pub store: Option<PathBuf>,
    /// Who you are: the authenticated user's id (or set it in the credentials file)
    #[arg(long, env = "RUNTIME_CLIENT_ID", value_name = "ID")]
    pub client_id: Option<String>,
    /// Token for stores that need one (or set it in the credentials file)
    #[arg(
        long,
        env = "RUNTIME_AUTH_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub auth_token: Option<AuthToken>,
    /// Log filter, e.g. `info` or `runtime_core=debug` [default: $RUST_LOG, else info]
    #[arg(long, env = "RUNTIME_LOG", value_name = "FILTER")]
    pub log: Option<String>,
    /// PEM certificates to trust for a wss:// hub, besides the usual public roots (a private CA or a self-signed hub)
    #[arg(long, env = "RUNTIME_CA_FILE", value_name = "PATH")]
    pub ca_file: Option<PathBuf>,
    /// Configuration file [default: runtime-agents/config.toml in the user config directory, if present]
    #[arg(long, env = "RUNTIME_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
}

/// Everything an agent process is configured with.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct AgentArgs {
    /// Notebook, store, identity, logging.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Names this runtime across restarts [default: a new uuid]
    #[arg(long, env = "RUNTIME_ID", value_name = "ID")]
    pub runtime_id: Option<String>,
    /// The runtime's kind, shown to users, e.g. echo or python
    #[arg(long, env = "RUNTIME_TYPE", value_name = "TYPE")]
    pub runtime_type: Option<String>,
    /// Seconds the session's lease lasts without renewal [default: 30]
    #[arg(long, env = "RUNTIME_LEASE_SECS", value_name = "SECONDS", value_parser = parse_seconds)]
    pub lease_secs: Option<Duration>,
    /// Seconds between lease renewals; less than the lease [default: 15]
    #[arg(long, env = "RUNTIME_RENEW_SECS", value_name = "SECONDS", value_parser = parse_seconds)]
    pub renew_secs: Option<Duration>,
    /// Seconds a cancelled execution may take to stop before it is dropped [default: 5]
    #[arg(long, env = "RUNTIME_CANCEL_GRACE_SECS", value_name = "SECONDS", value_parser = parse_seconds)]
    pub cancel_grace_secs: Option<Duration>,
    /// Most bytes of output one execution may write [default: 16777216 (16 MiB)]
    #[arg(long, env = "RUNTIME_MAX_OUTPUT_BYTES", value_name = "BYTES")]
    pub max_output_bytes: Option<u64>,
}

/// The configuration file: the same settings as the flags, snake_case.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    notebook: Option<String>,
    store: Option<PathBuf>,
    client_id: Option<String>,
    log: Option<String>,
    ca_file: Option<PathBuf>,
    runtime_id: Option<String>,
    runtime_type: Option<String>,
    lease_secs: Option<f64>,
    renew_secs: Option<f64>,
    cancel_grace_secs: Option<f64>,
    max_output_bytes: Option<u64>,
}

/// Why the configuration is unusable. Binaries exit with code 2 on these.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file could not be read: not a regular file, larger than 1 MiB or
    /// not UTF-8.
    #[error("configuration file: {0}")]
    ReadFile(#[from] SmallFileError),
    /// The configuration file is invalid; the message names the line, column and what was
    /// expected, never a value (the file may hold a token).
    #[error("invalid configuration file {path}: {message}")]
    InvalidFile {
        /// The file.
        path: PathBuf,
        /// What is wrong, where.
        message: String,
    },
    /// The credentials file is refused or invalid.
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    /// No client id anywhere.
    #[error(
        "no client id: runtimes and clients act for an authenticated user. Provide the user's \
         id in one of three ways:\n  --client-id <ID>\n  RUNTIME_CLIENT_ID=<ID>\n  \
         client_id = \"<ID>\" in {credentials} (readable only by you: chmod 600)"
    )]
    MissingClientId {
        /// Where the credentials file would be.
        credentials: String,
    },
    /// A setting has an unusable value.
    #[error("{setting}: {message}")]
    Invalid {
        /// The flag and environment variable that set it.
        setting: &'static str,
        /// What is wrong.
        message: String,
    },
    /// No default place for the store on this system.
    #[error("no data directory on this system: pass --store <PATH> or set RUNTIME_STORE")]
    NoStorePath,
}

impl ConfigError {
    /// The exit code for configuration errors: 2, as for bad command-line usage.
    pub const EXIT_CODE: i32 = 2;
}

/// What [`CommonArgs`] resolve to.
#[derive(Debug, Clone)]
pub struct CommonConfig {
    /// The notebook.
    pub notebook: String,
    /// The SQLite file.
    pub store: PathBuf,
    /// The authenticated user's id.
    pub client_id: String,
    /// A token, if one was given.
    pub auth_token: Option<AuthToken>,
    /// The log filter.
    pub log: String,
    /// Certificates to trust for a `wss://` hub, besides the public roots.
    pub ca_file: Option<PathBuf>,
}

/// What [`AgentArgs`] resolve to.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Notebook, store, identity, logging.
    pub common: CommonConfig,
    /// Ready for [`runtime_core::RuntimeAgent::new`].
    pub options: AgentOptions,
}

impl CommonArgs {
    /// Resolves flags and environment against the configuration and credentials files.
    pub fn resolve(self) -> Result<CommonConfig, ConfigError> {
        let file = load_file(self.config.as_deref())?;
        self.resolve_with(&file)
    }

    fn resolve_with(self, file: &FileConfig) -> Result<CommonConfig, ConfigError> {
        let mut client_id = self.client_id.or_else(|| file.client_id.clone());
        let mut auth_token = self.auth_token;
        if (client_id.is_none() || auth_token.is_none())
            && let Some(credentials) = credentials_path()
                .map(|path| read_credentials(&path))
                .transpose()?
                .flatten()
        {
            client_id = client_id.or(credentials.client_id);
            auth_token = auth_token.or(credentials.token);
        }
        let client_id = client_id
            .filter(|id| !id.trim().is_empty())
            .ok_or_else(|| ConfigError::MissingClientId {
                credentials: credentials_path().map_or_else(
                    || "the credentials file".to_owned(),
                    |p| p.display().to_string(),
                ),
            })?;
        let store = match self.store.or_else(|| file.store.clone()) {
            Some(store) => store,
            None => default_store_path().ok_or(ConfigError::NoStorePath)?,
        };
        let log = self
            .log
            .or_else(|| file.log.clone())
            .or_else(|| std::env::var("RUST_LOG").ok())
            .unwrap_or_else(|| "info".to_owned());
        Ok(CommonConfig {
            notebook: self
                .notebook
                .or_else(|| file.notebook.clone())
                .unwrap_or_else(|| "default".into()),
            store,
            client_id,
            auth_token,
            log,
            ca_file: self.ca_file.or_else(|| file.ca_file.clone()),
        })
    }
}

impl AgentArgs {
    /// Resolves flags and environment against the configuration and credentials files;
    /// `default_runtime_type` applies when none of them names one.
    pub fn resolve(self, default_runtime_type: &str) -> Result<AgentConfig, ConfigError> {
        let file = load_file(self.common.config.as_deref())?;
        let common = self.common.resolve_with(&file)?;
        let seconds = |flag: Option<Duration>, from_file: Option<f64>, setting: &'static str| match (
            flag, from_file,
        ) {
            (Some(duration), _) => Ok(Some(duration)),
            (None, Some(secs)) => seconds_to_duration(secs)
                .map(Some)
                .map_err(|message| ConfigError::Invalid { setting, message }),
            (None, None) => Ok(None),
        };
        let defaults = AgentOptions::new(common.client_id.clone());
        let lease =
            seconds(self.lease_secs, file.lease_secs, LEASE)?.unwrap_or(defaults.lease_duration);
        let renew =
            seconds(self.renew_secs, file.renew_secs, RENEW)?.unwrap_or(defaults.renew_interval);
        let grace = seconds(self.cancel_grace_secs, file.cancel_grace_secs, GRACE)?
            .unwrap_or(defaults.cancel_grace);
        if lease < AgentOptions::MIN_LEASE {
            return Err(ConfigError::Invalid {
                setting: LEASE,
                message: format!(
                    "a {} lease is too short; it must last at least {}",
                    format_duration(lease),
                    format_duration(AgentOptions::MIN_LEASE)
                ),
            });
        }
        if renew < AgentOptions::MIN_RENEW_INTERVAL {
            return Err(ConfigError::Invalid {
                setting: RENEW,
                message: format!(
                    "renewing every {} is too often; renew at most every {}",
                    format_duration(renew),
                    format_duration(AgentOptions::MIN_RENEW_INTERVAL)
                ),
            });
        }
        if renew.is_zero() || renew >= lease {
            return Err(ConfigError::Invalid {
                setting: RENEW,
                message: format!(
                    "renewals every {} cannot keep a {} lease alive; renew more often than the \
                     lease lasts (--lease-secs / RUNTIME_LEASE_SECS)",
                    format_duration(renew),
                    format_duration(lease)
                ),
            });
        }
        let options = AgentOptions {
            runtime_id: self.runtime_id.or(file.runtime_id),
            runtime_type: self
                .runtime_type
                .or(file.runtime_type)
                .unwrap_or_else(|| default_runtime_type.to_owned()),
            lease_duration: lease,
            renew_interval: renew,
            cancel_grace: grace,
            max_output_bytes: self
                .max_output_bytes
                .or(file.max_output_bytes)
                .or(defaults.max_output_bytes),
            ..defaults
        };
        Ok(AgentConfig { common, options })
    }
}

const LEASE: &str = "--lease-secs / RUNTIME_LEASE_SECS";
const RENEW: &str = "--renew-secs / RUNTIME_RENEW_SECS";
const GRACE: &str = "--cancel-grace-secs / RUNTIME_CANCEL_GRACE_SECS";

/// Where the store lives by default: `<data dir>/runtime-agents/notebooks.db`.
pub fn default_store_path() -> Option<PathBuf> {
    dirs::data_dir().map(|dir| dir.join("runtime-agents").join("notebooks.db"))
}

fn load_file(explicit: Option<&Path>) -> Result<FileConfig, ConfigError> {
    let (path, required) = match explicit {
        Some(path) => (path.to_path_buf(), true),
        None => match dirs::config_dir() {
            Some(dir) => (dir.join("runtime-agents").join("config.toml"), false),
            None => return Ok(FileConfig::default()),
        },
    };
    let text = match read_small_text(&path, MAX_CONFIG_FILE)? {
        Some(text) => text,
        None if !required => return Ok(FileConfig::default()),
        None => {
            return Err(ConfigError::ReadFile(SmallFileError::Read {
                path,
                source: std::io::ErrorKind::NotFound.into(),
            }));
        }
    };
    toml::from_str(&text).map_err(|error| ConfigError::InvalidFile {
        message: toml_error_without_values(&error, &text),
        path,
    })
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| "expected a number of seconds, like 30 or 0.5".to_owned())?;
    seconds_to_duration(secs)
}

/// The longest duration any setting takes: 365 days. Longer ones are surely mistakes, and
/// adding them to the current time could overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 86_400);

fn seconds_to_duration(secs: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|duration| !duration.is_zero() && *duration <= MAX_DURATION)
        .ok_or_else(|| {
            format!(
                "expected a positive number of seconds, at most 365 days (31536000), got {secs}"
            )
        })
}

/// A command line that could not be parsed, or a request for `--help` or `--version`.
/// The application prints it and exits with [`CliError::exit_code`]; this library never
/// exits the process.
#[derive(Debug)]
pub struct CliError {
    error: clap::Error,
    /// The environment variable that can also set the bad value.
    env: Option<String>,
}

impl CliError {
    /// Prints the message (or the help) as clap would, and names the environment variable
    /// that can also set a bad value.
    pub fn print(&self) {
        let _ = self.error.print();
        if let Some(env) = &self.env {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("  (this setting also comes from the environment variable {env})");
            }
        }
    }

    /// The exit code clap uses: 0 for `--help` and `--version`, 2 for a usage error.
    pub fn exit_code(&self) -> i32 {
        self.error.exit_code()
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.error.render())?;
        if let Some(env) = &self.env {
            write!(
                f,
                " (this setting also comes from the environment variable {env})"
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for CliError {}

/// Parses the command line like [`Parser::try_parse`], but a bad value's error also names
/// the environment variable that can set it.
///
/// ```no_run
/// #[derive(clap::Parser)]
/// struct Cli {
///     #[command(flatten)]
///     agent: runtime_native::config::AgentArgs,
/// }
///
/// fn main() -> std::process::ExitCode {
///     let cli = match runtime_native::config::parse_cli::<Cli>() {
///         Ok(cli) => cli,
///         Err(error) => {
///             error.print();
///             return std::process::ExitCode::from(error.exit_code() as u8);
///         }
///     };
///     # let _ = cli;
///     std::process::ExitCode::SUCCESS
/// }
/// ```
pub fn parse_cli<T: Parser>() -> Result<T, CliError> {
    T::try_parse().map_err(|error| {
        use clap::error::{ContextKind, ContextValue, ErrorKind};
        let env = match (error.kind(), error.get(ContextKind::InvalidArg)) {
            (
                ErrorKind::InvalidValue | ErrorKind::ValueValidation,
                Some(ContextValue::String(flag)),
            ) => {
                let flag = flag.split_whitespace().next().unwrap_or_default();
                T::command()
                    .get_arguments()
                    .find(|arg| {
                        arg.get_long()
                            .is_some_and(|long| flag == format!("--{long}"))
                    })
                    .and_then(|arg| arg.get_env())
                    .map(|env| env.to_string_lossy().into_owned())
            }
            _ => None,
        };
        CliError { error, env }
    })
}

/// Sends `tracing` output to stderr, filtered by `filter` (`RUST_LOG` syntax).
pub fn init_logging(filter: &str) -> Result<(), ConfigError> {
    let filter =
        tracing_subscriber::EnvFilter::try_new(filter).map_err(|error| ConfigError::Invalid {
            setting: "--log / RUNTIME_LOG",
            message: format!("not a log filter ({error}); try `info` or `runtime_core=debug`"),
        })?;
    // A subscriber set earlier (by an embedding app, or a second call) stays.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    Ok(())
}

/// A duration as people write one in files and flags: `"30s"`, `"500ms"`, `"2m"`, `"1h"`,
/// `"250µs"`, or a bare number of seconds (`"1.5"`); more than zero and at most a year. It
/// reads back what [`format_duration`] writes.
///
/// ```
/// use std::time::Duration;
/// use runtime_native::config::{format_duration, parse_duration};
///
/// assert_eq!(parse_duration("10m"), Some(Duration::from_secs(600)));
/// assert_eq!(parse_duration("0s"), None);
/// for written in [Duration::from_secs(120), Duration::from_secs(90), Duration::from_millis(1500), Duration::from_micros(250)] {
///     assert_eq!(parse_duration(&format_duration(written)), Some(written));
/// }
/// ```
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| c.is_alphabetic()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.trim().parse().ok()?;
    let seconds = match unit.trim() {
        "" | "s" => number,
        "ms" => number / 1000.0,
        "us" | "µs" => number / 1_000_000.0,
        "m" | "min" => number * 60.0,
        "h" => number * 3600.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|d| !d.is_zero() && *d <= MAX_DURATION)
}

pub use runtime_core::clock::format_duration;
