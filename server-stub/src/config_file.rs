//! The server's config file: a JSON object holding the same settings as the
//! command-line flags, under the flags' names with `_` for `-`.
//!
//! ```json
//! {
//!   "listen": "0.0.0.0:443",
//!   "data_dir": "/var/lib/updraft-server",
//!   "database_url": "postgres://updraft:secret@db.example.com/updraft",
//!   "cert": "/etc/updraft-server/tls/fullchain.pem",
//!   "key": "/etc/updraft-server/tls/privkey.pem",
//!   "key_dir": "/etc/updraft-server/token-keys",
//!   "signing_key_id": 1,
//!   "public_url": "https://updates.example.com",
//!   "admin_email": "ops@example.com",
//!   "artifact_verify_keys": ["/etc/updraft-server/artifact-signing.pub"],
//!   "log_level": "info"
//! }
//! ```
//!
//! Every key is optional. A key this version does not know is an error
//! (naming it), so a misspelt setting is not silently ignored. Relative
//! paths are relative to the config file's directory. The admin password
//! is not a setting here: it comes from `UPDRAFT_ADMIN_PASSWORD` on first
//! start only. [`FileConfig::load`] reads a file; the binary lets flags
//! (and their environment variables) override what it says.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::StartError;

/// The settings a config file may hold; `None` (or empty) where it does
/// not say.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a JSON object of settings")]
#[non_exhaustive]
pub struct FileConfig {
    /// `listen`: address and port to serve HTTPS on.
    pub listen: Option<SocketAddr>,
    /// `data_dir`: SQLite database, artifacts, certificate, keys.
    pub data_dir: Option<PathBuf>,
    /// `database_url`: `sqlite://FILE` or `postgres://...`.
    pub database_url: Option<String>,
    /// `cert`: TLS certificate chain (PEM); needs `key`.
    pub cert: Option<PathBuf>,
    /// `key`: TLS private key (PEM); needs `cert`.
    pub key: Option<PathBuf>,
    /// `key_dir`: token signing keys `private.id.<N>.pem`.
    pub key_dir: Option<PathBuf>,
    /// `signing_key_id`: which `private.id.<N>.pem` signs new tokens.
    pub signing_key_id: Option<u64>,
    /// `public_url`: base URL of download links.
    pub public_url: Option<String>,
    /// `admin_email`: the admin account made on first start.
    pub admin_email: Option<String>,
    /// `artifact_verify_keys`: PEM public keys uploads must be signed with.
    pub artifact_verify_keys: Option<Vec<PathBuf>>,
    /// `log_level`: error, warn, info, debug or trace.
    pub log_level: Option<String>,
}

impl FileConfig {
    /// Read and check `path`. Errors name the file, and the key when one is
    /// at fault.
    pub fn load(path: &Path) -> Result<FileConfig, StartError> {
        let fail = |e: String| StartError(format!("config file {}: {e}", path.display()));
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        let mut config = Self::parse(&text).map_err(fail)?;
        if let Some(dir) = path.parent() {
            config.resolve_paths(dir);
        }
        Ok(config)
    }

    /// Check the text of a config file (paths left as written).
    pub fn parse(text: &str) -> Result<FileConfig, String> {
        // serde would also take an array, matching its elements to the
        // keys in order: only an object names its settings.
        if !text.trim_start().starts_with('{') {
            return Err(
                "expected a JSON object of settings, like {\"listen\": \"0.0.0.0:443\"}".into(),
            );
        }
        let err = match serde_json::from_str::<FileConfig>(text) {
            Ok(c) => return c.check().map(|()| c),
            Err(e) => e,
        };
        if !err.is_data() {
            // Not JSON, or cut short: serde_json's message says where.
            return Err(err.to_string());
        }
        // A value of the wrong kind: find the key it belongs to, since
        // serde_json only gives the position.
        if let Ok(serde_json::Value::Object(map)) = serde_json::from_str(text) {
            for (key, value) in map {
                let alone = serde_json::Value::Object([(key.clone(), value)].into_iter().collect());
                if let Err(e) = FileConfig::deserialize(alone) {
                    let e = e.to_string();
                    return Err(if e.starts_with("unknown field") {
                        format!("{e} (line {})", err.line())
                    } else {
                        format!("`{key}`: {e} (line {})", err.line())
                    });
                }
            }
        }
        Err(err.to_string())
    }

    /// What serde cannot check on its own.
    fn check(&self) -> Result<(), String> {
        if let Some(level) = &self.log_level {
            log_level(level).map_err(|e| format!("`log_level`: {e}"))?;
        }
        Ok(())
    }

    /// Make relative paths relative to `dir` (the config file's directory).
    fn resolve_paths(&mut self, dir: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        };
        for p in [
            &mut self.data_dir,
            &mut self.cert,
            &mut self.key,
            &mut self.key_dir,
        ]
        .into_iter()
        .flatten()
        {
            fix(p);
        }
        for p in self.artifact_verify_keys.iter_mut().flatten() {
            fix(p);
        }
    }
}

/// Parse a log level name.
pub fn log_level(s: &str) -> Result<tracing::Level, String> {
    s.parse()
        .map_err(|_| format!("{s:?} is not a log level (error, warn, info, debug, trace)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_read() -> Result<(), Box<dyn std::error::Error>> {
        let mut c = FileConfig::parse(
            r#"{"listen": "0.0.0.0:443", "data_dir": "d", "database_url": "sqlite://x.db",
                "cert": "c.pem", "key": "k.pem", "key_dir": "keys", "signing_key_id": 2,
                "public_url": "https://u.example", "admin_email": "a@example.com",
                "artifact_verify_keys": ["a.pub", "/abs/b.pub"], "log_level": "debug"}"#,
        )?;
        assert_eq!(c.listen, Some("0.0.0.0:443".parse()?));
        assert_eq!(c.signing_key_id, Some(2));
        assert_eq!(c.database_url.as_deref(), Some("sqlite://x.db"));
        assert_eq!(c.public_url.as_deref(), Some("https://u.example"));
        assert_eq!(c.admin_email.as_deref(), Some("a@example.com"));
        assert_eq!(c.log_level.as_deref(), Some("debug"));
        c.resolve_paths(Path::new("/etc/u"));
        assert_eq!(c.data_dir, Some(PathBuf::from("/etc/u/d")));
        assert_eq!(c.cert, Some(PathBuf::from("/etc/u/c.pem")));
        assert_eq!(c.key, Some(PathBuf::from("/etc/u/k.pem")));
        assert_eq!(c.key_dir, Some(PathBuf::from("/etc/u/keys")));
        assert_eq!(
            c.artifact_verify_keys,
            Some(vec![
                PathBuf::from("/etc/u/a.pub"),
                PathBuf::from("/abs/b.pub")
            ])
        );
        assert_eq!(FileConfig::parse("{}")?, FileConfig::default());
        Ok(())
    }

    /// The error for `text`, or a text saying it was accepted.
    fn error_of(text: &str) -> String {
        match FileConfig::parse(text) {
            Ok(c) => format!("accepted: {c:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn errors_name_the_key() {
        let e = error_of(r#"{"listen": "127.0.0.1:1", "lisen": "x"}"#);
        assert!(e.starts_with("unknown field `lisen`"), "{e}");
        let e = error_of("{\n\"data_dir\": \"d\",\n\"listen\": \"nowhere\"}");
        assert!(e.starts_with("`listen`: "), "{e}");
        assert!(e.contains("line 3"), "{e}");
        let e = error_of(r#"{"signing_key_id": "one"}"#);
        assert!(e.starts_with("`signing_key_id`: "), "{e}");
        let e = error_of(r#"{"log_level": "loud"}"#);
        assert!(e.contains("`log_level`") && e.contains("loud"), "{e}");
        for not_object in [r#"["127.0.0.1:1"]"#, "", "null", "5"] {
            let e = error_of(not_object);
            assert!(e.contains("a JSON object of settings"), "{e}");
        }
        let e = error_of(r#"{"listen": "#);
        assert!(e.contains("EOF") && e.contains("line 1"), "{e}");
    }
}
