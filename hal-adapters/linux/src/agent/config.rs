//! The daemon's configuration file: JSON, with `mender.conf`'s keys where
//! Mender has one, so an existing `/etc/mender/mender.conf` mostly carries
//! over. Keys Updraft does not know are reported and ignored, as the
//! Mender client ignores them.
//!
//! | key | default | meaning |
//! | --- | --- | --- |
//! | `ServerURL` (or `Servers[0].ServerURL`) | — | the server, `https://` only (the daemon needs it) |
//! | `ServerCertificate` | system roots | PEM file of the server's certificate (or its CA) |
//! | `TenantToken` | empty | the tenant token |
//! | `UpdatePollIntervalSeconds` | 1800 | between update checks |
//! | `InventoryPollIntervalSeconds` | 28800 | between inventory updates |
//! | `RetryPollIntervalSeconds` | 300 | the longest retry delay |
//! | `RootfsPartA`, `RootfsPartB` | — | the two slots (block devices or files) |
//! | `ArtifactVerifyKey`, `ArtifactVerifyKeys` | none | PEM public keys; with any, unsigned artifacts fail |
//! | `DataDir` | `/var/lib/updraft` | the state record and the device key |
//! | `DeviceTypeFile` | `/var/lib/mender/device_type` | holds `device_type=...` |
//! | `ArtifactInfoFile` | `/etc/mender/artifact_info` | holds `artifact_name=...` of the image as built |
//! | `IdentityScript` | `/usr/share/mender/identity/mender-device-identity` | prints `key=value` lines |
//! | `InventoryScriptsDir` | `/usr/share/mender/inventory` | `mender-inventory-*` scripts, `key=value` lines |
//! | `DeviceKey` | `DataDir/device-key.pem` | the device's private key (an ECDSA P-256 key is made when missing) |
//! | `BootLoader` | `uboot` | `uboot` or `grub` |
//! | `FwEnvConfig` | `/etc/fw_env.config` | U-Boot: where the env lives |
//! | `GrubenvDir` | `/boot/efi/EFI/BOOT` | GRUB: the directory holding `mender_grubenv1/2` |
//! | `BootPartitions` | the trailing numbers of `RootfsPartA/B` | the `mender_boot_part` values of slots A and B |
//! | `RebootCommand` | `["reboot"]` | run to reboot (the daemon exits after it) |
//! | `HealthCheckCommand` | none | run after booting a new image; exit 0 = healthy |
//! | `MaxAttempts` | 3 | attempts for a download or a status report |
//! | `RootfsScriptsDir` | `/etc/mender/scripts` | the root file system's state scripts (Idle, Sync, Download); the artifact's are kept in `DataDir/scripts` |
//! | `StateScriptTimeoutSeconds` | 3600 | a state script running longer is killed and fails |
//! | `StateScriptRetryIntervalSeconds` | 60 | after a script exits 21 ("retry later"), run it again after this long |
//! | `StateScriptRetryTimeoutSeconds` | 1800 | a script that keeps asking to retry later fails after this long |

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The default config file.
pub const DEFAULT_PATH: &str = "/etc/updraft/updraft.conf";

/// Which bootloader holds the trial-boot variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BootLoader {
    /// U-Boot env through `fw_env.config`.
    Uboot,
    /// Mender's double GRUB env.
    Grub,
}

#[derive(Debug, Deserialize)]
struct ServerEntry {
    #[serde(rename = "ServerURL")]
    server_url: String,
}

/// The file as written (every key optional).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Raw {
    #[serde(rename = "ServerURL")]
    server_url: Option<String>,
    servers: Option<Vec<ServerEntry>>,
    server_certificate: Option<PathBuf>,
    tenant_token: Option<String>,
    update_poll_interval_seconds: Option<u64>,
    inventory_poll_interval_seconds: Option<u64>,
    retry_poll_interval_seconds: Option<u64>,
    rootfs_part_a: Option<PathBuf>,
    rootfs_part_b: Option<PathBuf>,
    artifact_verify_key: Option<PathBuf>,
    artifact_verify_keys: Option<Vec<PathBuf>>,
    data_dir: Option<PathBuf>,
    device_type_file: Option<PathBuf>,
    artifact_info_file: Option<PathBuf>,
    identity_script: Option<PathBuf>,
    inventory_scripts_dir: Option<PathBuf>,
    device_key: Option<PathBuf>,
    boot_loader: Option<BootLoader>,
    fw_env_config: Option<PathBuf>,
    grubenv_dir: Option<PathBuf>,
    boot_partitions: Option<[u32; 2]>,
    reboot_command: Option<Vec<String>>,
    health_check_command: Option<Vec<String>>,
    max_attempts: Option<u8>,
    rootfs_scripts_dir: Option<PathBuf>,
    state_script_timeout_seconds: Option<u64>,
    state_script_retry_interval_seconds: Option<u64>,
    state_script_retry_timeout_seconds: Option<u64>,
    #[serde(flatten)]
    unknown: BTreeMap<String, serde_json::Value>,
}

/// The daemon's settings, checked.
#[derive(Debug, Clone)]
pub struct Config {
    /// The server's base URL, without a trailing `/` (the daemon needs
    /// one; standalone installs do not).
    pub server_url: Option<String>,
    /// PEM file the server's certificate must chain to (`None`: the
    /// built-in web roots).
    pub server_certificate: Option<PathBuf>,
    /// The tenant token (empty: none).
    pub tenant_token: String,
    /// Seconds between update checks.
    pub update_poll_seconds: u64,
    /// Seconds between inventory updates.
    pub inventory_poll_seconds: u64,
    /// The longest retry delay, seconds.
    pub retry_poll_seconds: u64,
    /// Slot A and slot B.
    pub slots: [PathBuf; 2],
    /// Artifact verification keys.
    pub verify_keys: Vec<PathBuf>,
    /// Where the state record and the device key live.
    pub data_dir: PathBuf,
    /// The `device_type` file.
    pub device_type_file: PathBuf,
    /// The `artifact_info` file.
    pub artifact_info_file: PathBuf,
    /// The identity script.
    pub identity_script: PathBuf,
    /// The inventory scripts' directory.
    pub inventory_scripts_dir: PathBuf,
    /// The device key (PEM).
    pub device_key: PathBuf,
    /// The bootloader.
    pub boot_loader: BootLoader,
    /// U-Boot's `fw_env.config`.
    pub fw_env_config: PathBuf,
    /// The Mender grubenv directory.
    pub grubenv_dir: PathBuf,
    /// `mender_boot_part` of slots A and B.
    pub boot_partitions: [u32; 2],
    /// The reboot command.
    pub reboot_command: Vec<String>,
    /// The health check command, if any.
    pub health_check_command: Option<Vec<String>>,
    /// Attempts for a download or a status report.
    pub max_attempts: u8,
    /// The root file system's state scripts.
    pub rootfs_scripts_dir: PathBuf,
    /// The longest a state script may run, seconds.
    pub script_timeout_seconds: u64,
    /// Between runs of a script asking to retry later, seconds.
    pub script_retry_interval_seconds: u64,
    /// How long a script may keep asking to retry later, seconds.
    pub script_retry_timeout_seconds: u64,
    /// Keys in the file that Updraft ignores (for a warning).
    pub ignored_keys: Vec<String>,
}

/// A config file that cannot be used, with what to fix.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// The number at the end of a partition's name (`/dev/mmcblk0p3` → 3).
fn trailing_number(p: &Path) -> Option<u32> {
    let s = p.to_str()?;
    let digits = s.len() - s.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    s.get(s.len() - digits..)?.parse().ok()
}

impl Config {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
        Self::parse(&text).map_err(|ConfigError(e)| ConfigError(format!("{}: {e}", path.display())))
    }

    /// Checks the text of a config file.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let raw: Raw = serde_json::from_str(text).map_err(|e| ConfigError(e.to_string()))?;
        let server_url = raw.server_url.filter(|u| !u.is_empty()).or_else(|| {
            raw.servers
                .and_then(|s| s.into_iter().next().map(|e| e.server_url))
        });
        if let Some(url) = &server_url {
            if !url.starts_with("https://") {
                return Err(ConfigError(format!(
                    "ServerURL {url:?} is not https://: Updraft talks to servers over HTTPS only"
                )));
            }
        }
        let server_url = server_url.map(|u| u.trim_end_matches('/').to_owned());
        let (Some(a), Some(b)) = (raw.rootfs_part_a, raw.rootfs_part_b) else {
            return Err(ConfigError(
                "RootfsPartA and RootfsPartB must both be set (the two slots)".into(),
            ));
        };
        if a == b {
            return Err(ConfigError(format!(
                "RootfsPartA and RootfsPartB are both {}",
                a.display()
            )));
        }
        let boot_partitions = match raw.boot_partitions {
            Some(p) => p,
            None => match (trailing_number(&a), trailing_number(&b)) {
                (Some(pa), Some(pb)) => [pa, pb],
                _ => {
                    return Err(ConfigError(format!(
                        "cannot tell the partition numbers of {} and {}: set BootPartitions, \
                         e.g. [2, 3]",
                        a.display(),
                        b.display()
                    )))
                }
            },
        };
        if boot_partitions[0] == boot_partitions[1] {
            return Err(ConfigError(format!(
                "both slots are partition {}: set BootPartitions",
                boot_partitions[0]
            )));
        }
        let mut verify_keys: Vec<PathBuf> = raw.artifact_verify_key.into_iter().collect();
        verify_keys.extend(raw.artifact_verify_keys.unwrap_or_default());
        let data_dir = raw
            .data_dir
            .unwrap_or_else(|| PathBuf::from("/var/lib/updraft"));
        let reboot_command = raw
            .reboot_command
            .unwrap_or_else(|| vec!["reboot".to_owned()]);
        if reboot_command.is_empty() {
            return Err(ConfigError("RebootCommand is empty".into()));
        }
        let health_check_command = raw.health_check_command.filter(|c| !c.is_empty());
        let secs = |v: Option<u64>, default: u64, name: &str| match v {
            Some(0) => Err(ConfigError(format!("{name} must be at least 1"))),
            Some(n) => Ok(n),
            None => Ok(default),
        };
        Ok(Config {
            server_url,
            server_certificate: raw.server_certificate.filter(|p| !p.as_os_str().is_empty()),
            tenant_token: raw.tenant_token.unwrap_or_default(),
            update_poll_seconds: secs(
                raw.update_poll_interval_seconds,
                1800,
                "UpdatePollIntervalSeconds",
            )?,
            inventory_poll_seconds: secs(
                raw.inventory_poll_interval_seconds,
                28800,
                "InventoryPollIntervalSeconds",
            )?,
            retry_poll_seconds: secs(
                raw.retry_poll_interval_seconds,
                300,
                "RetryPollIntervalSeconds",
            )?,
            slots: [a, b],
            verify_keys,
            device_key: raw
                .device_key
                .unwrap_or_else(|| data_dir.join("device-key.pem")),
            data_dir,
            device_type_file: raw
                .device_type_file
                .unwrap_or_else(|| PathBuf::from("/var/lib/mender/device_type")),
            artifact_info_file: raw
                .artifact_info_file
                .unwrap_or_else(|| PathBuf::from("/etc/mender/artifact_info")),
            identity_script: raw.identity_script.unwrap_or_else(|| {
                PathBuf::from("/usr/share/mender/identity/mender-device-identity")
            }),
            inventory_scripts_dir: raw
                .inventory_scripts_dir
                .unwrap_or_else(|| PathBuf::from("/usr/share/mender/inventory")),
            boot_loader: raw.boot_loader.unwrap_or(BootLoader::Uboot),
            fw_env_config: raw
                .fw_env_config
                .unwrap_or_else(|| PathBuf::from(crate::boot_env::DEFAULT_CONFIG)),
            grubenv_dir: raw
                .grubenv_dir
                .unwrap_or_else(|| PathBuf::from("/boot/efi/EFI/BOOT")),
            boot_partitions,
            reboot_command,
            health_check_command,
            max_attempts: raw.max_attempts.unwrap_or(3).max(1),
            rootfs_scripts_dir: raw
                .rootfs_scripts_dir
                .unwrap_or_else(|| PathBuf::from("/etc/mender/scripts")),
            script_timeout_seconds: secs(
                raw.state_script_timeout_seconds,
                3600,
                "StateScriptTimeoutSeconds",
            )?,
            script_retry_interval_seconds: secs(
                raw.state_script_retry_interval_seconds,
                60,
                "StateScriptRetryIntervalSeconds",
            )?,
            script_retry_timeout_seconds: secs(
                raw.state_script_retry_timeout_seconds,
                1800,
                "StateScriptRetryTimeoutSeconds",
            )?,
            ignored_keys: raw.unknown.into_keys().collect(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn mender_conf_keys_and_defaults() {
        let c = Config::parse(
            r#"{"ServerURL": "https://hosted.example/", "RootfsPartA": "/dev/mmcblk0p2",
                "RootfsPartB": "/dev/mmcblk0p3", "UpdatePollIntervalSeconds": 60,
                "ArtifactVerifyKey": "/etc/k.pem", "DBus": {"Enabled": true}}"#,
        )
        .unwrap();
        assert_eq!(c.server_url.as_deref(), Some("https://hosted.example"));
        assert_eq!(c.boot_partitions, [2, 3]);
        assert_eq!(c.update_poll_seconds, 60);
        assert_eq!(c.inventory_poll_seconds, 28800);
        assert_eq!(c.verify_keys, vec![PathBuf::from("/etc/k.pem")]);
        assert_eq!(c.device_key, Path::new("/var/lib/updraft/device-key.pem"));
        assert_eq!(c.boot_loader, BootLoader::Uboot);
        assert_eq!(c.ignored_keys, vec!["DBus".to_owned()]);
    }

    #[test]
    fn servers_list_and_explicit_partitions() {
        let c = Config::parse(
            r#"{"Servers": [{"ServerURL": "https://a.example"}], "RootfsPartA": "/img/a",
                "RootfsPartB": "/img/b", "BootPartitions": [2, 3], "BootLoader": "grub"}"#,
        )
        .unwrap();
        assert_eq!(c.server_url.as_deref(), Some("https://a.example"));
        assert_eq!(c.boot_partitions, [2, 3]);
        assert_eq!(c.boot_loader, BootLoader::Grub);
    }

    #[test]
    fn errors_name_the_key() {
        let e = |t: &str| Config::parse(t).unwrap_err().0;
        let standalone = Config::parse(r#"{"RootfsPartA": "/a1", "RootfsPartB": "/b2"}"#).unwrap();
        assert_eq!(standalone.server_url, None);
        assert!(
            e(r#"{"ServerURL": "http://x", "RootfsPartA": "/a1", "RootfsPartB": "/b2"}"#)
                .contains("HTTPS only")
        );
        assert!(e(r#"{"ServerURL": "https://x", "RootfsPartA": "/a1"}"#).contains("RootfsPartB"));
        assert!(
            e(r#"{"ServerURL": "https://x", "RootfsPartA": "/a", "RootfsPartB": "/b"}"#)
                .contains("BootPartitions")
        );
        assert!(e(
            r#"{"ServerURL": "https://x", "RootfsPartA": "/a1", "RootfsPartB": "/b2",
                    "UpdatePollIntervalSeconds": 0}"#
        )
        .contains("UpdatePollIntervalSeconds"));
        assert!(e(r#"{"ServerURL": 5}"#).contains("invalid type"));
    }
}
