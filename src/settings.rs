//! Configuration for `vivirk serve`: flags, then `VIVIRK_…` environment variables, then an
//! optional TOML file, then defaults — parsed once, here, into a typed [`Settings`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::log::Durability;

#[derive(clap::Args, Debug, Default, Clone)]
pub struct ServeArgs {
    /// A TOML file with any of the settings below (flags and environment win over it).
    #[arg(long, env = "VIVIRK_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where the log, the index and the keys live.
    #[arg(long, env = "VIVIRK_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "VIVIRK_BIND")]
    pub bind: Option<SocketAddr>,
    /// `fsync` (default): acknowledge only durable writes. `none`: benchmarks only.
    #[arg(long, env = "VIVIRK_DURABILITY", value_enum)]
    pub durability: Option<Durability>,
    /// Segment size in bytes before the log rolls to a new file.
    #[arg(long, env = "VIVIRK_SEGMENT_SIZE")]
    pub segment_size: Option<u64>,
    /// Log as JSON lines instead of text.
    #[arg(long, env = "VIVIRK_LOG_JSON")]
    pub log_json: Option<bool>,
    /// Sign a checkpoint of the log's head this often (seconds), when it moved (default 60).
    #[arg(long, env = "VIVIRK_CHECKPOINT_INTERVAL_SECS")]
    pub checkpoint_interval_secs: Option<u64>,
    /// Keep access-log entries this many days, then delete them (default 183).
    #[arg(long, env = "VIVIRK_ACCESS_LOG_RETENTION_DAYS")]
    pub access_log_retention_days: Option<u32>,
    /// Courses whose decision state is kept in memory between writes (default 16384). A write
    /// to a course not kept reads the course's events from the log first. README: "Memory".
    #[arg(long, env = "VIVIRK_DECISION_CACHE")]
    pub decision_cache: Option<usize>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    /// Token issuer, audience and lifetimes, rate limits, external identity providers.
    #[serde(default)]
    auth: Option<crate::auth::AuthConfig>,
    /// Checkpoint interval, access-log retention and group commit.
    #[serde(default)]
    audit: Option<crate::audit::AuditConfig>,
    data_dir: Option<PathBuf>,
    bind: Option<SocketAddr>,
    durability: Option<Durability>,
    segment_size: Option<u64>,
    log_json: Option<bool>,
    decision_cache: Option<usize>,
}

/// Everything `serve` needs, resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub bind: SocketAddr,
    pub durability: Durability,
    pub segment_size: u64,
    pub log_json: bool,
    pub auth: crate::auth::AuthConfig,
    pub audit: crate::audit::AuditConfig,
    pub decision_cache: usize,
}

impl Settings {
    pub fn for_data_dir(dir: &Path) -> Self {
        Settings {
            data_dir: dir.to_owned(),
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            durability: Durability::Fsync,
            segment_size: 64 << 20,
            log_json: false,
            auth: crate::auth::AuthConfig::default(),
            audit: crate::audit::AuditConfig::default(),
            decision_cache: crate::app::DEFAULT_DECISION_CACHE,
        }
    }

    pub fn resolve(args: ServeArgs) -> Result<Self, String> {
        let file = match &args.config {
            None => FileSettings::default(),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
                toml::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))?
            }
        };
        let d = Settings::for_data_dir(Path::new("./data"));
        let segment_size = args.segment_size.or(file.segment_size).unwrap_or(d.segment_size);
        if !(4096..=(1 << 30)).contains(&segment_size) {
            return Err("segment_size must be between 4 KiB and 1 GiB".into());
        }
        let mut audit = file.audit.unwrap_or_default();
        if let Some(s) = args.checkpoint_interval_secs {
            audit.checkpoint_interval_secs = s;
        }
        if let Some(d) = args.access_log_retention_days {
            audit.access_log_retention_days = d;
        }
        audit.validate()?;
        let decision_cache = args.decision_cache.or(file.decision_cache).unwrap_or(d.decision_cache);
        if decision_cache == 0 {
            return Err("decision_cache must be at least 1".into());
        }
        Ok(Settings {
            data_dir: args.data_dir.or(file.data_dir).unwrap_or(d.data_dir),
            bind: args.bind.or(file.bind).unwrap_or(d.bind),
            durability: args.durability.or(file.durability).unwrap_or(d.durability),
            segment_size,
            log_json: args.log_json.or(file.log_json).unwrap_or(false),
            auth: file.auth.unwrap_or_default(),
            audit,
            decision_cache,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_decision_cache_comes_from_the_flag_then_the_file_then_the_default() {
        assert_eq!(Settings::resolve(ServeArgs::default()).unwrap().decision_cache, crate::app::DEFAULT_DECISION_CACHE);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("vivirk.toml");
        std::fs::write(&file, "decision_cache = 500\n").unwrap();
        let from_file = ServeArgs { config: Some(file.clone()), ..ServeArgs::default() };
        assert_eq!(Settings::resolve(from_file.clone()).unwrap().decision_cache, 500);
        let flag = ServeArgs { decision_cache: Some(7), ..from_file };
        assert_eq!(Settings::resolve(flag).unwrap().decision_cache, 7);
        let zero = ServeArgs { decision_cache: Some(0), ..ServeArgs::default() };
        assert!(Settings::resolve(zero).unwrap_err().contains("decision_cache"));
    }
}
