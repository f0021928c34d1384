//! The `updraft` command.
#![forbid(unsafe_code)]

use std::io::{self, IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use updraft_core::crypto::SigningKey;
use updraft_linux::artifact::{self, load_key, sign, write};
use updraft_linux::{boot_env, mcuboot};

/// Updraft: over-the-air updates, compatible with Mender.
#[derive(Parser)]
#[command(name = "updraft", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make, sign, read and check Mender artifacts.
    #[command(subcommand)]
    Artifact(ArtifactCommand),
    /// Print and set U-Boot or Mender GRUB environment variables (like
    /// `fw_printenv` / `fw_setenv`).
    #[command(subcommand)]
    BootEnv(BootEnvCommand),
    /// Show, verify and mark MCUboot images and slots.
    #[command(subcommand)]
    Mcuboot(McubootCommand),
    /// Run the update agent: talk to the server, install updates into the
    /// inactive slot, reboot into them, commit or roll back. Exits after
    /// running the reboot command.
    Daemon(DaemonArgs),
    /// Standalone: install an artifact file into the inactive slot and arm
    /// a trial boot of it (like `mender install`). Reboot, then `commit`.
    Install(InstallArgs),
    /// Standalone: make the new image permanent after booting into it.
    /// Exit 2 when no update is in progress.
    Commit(AgentConfigArg),
    /// Standalone: go back to the previous image (before or after the
    /// reboot). Exit 2 when no update is in progress.
    Rollback(AgentConfigArg),
    /// Print the name of the installed artifact.
    ShowArtifact(AgentConfigArg),
}

#[derive(Args)]
struct AgentConfigArg {
    /// The config file (the daemon's).
    #[arg(short = 'c', long = "config", value_name = "FILE", default_value = updraft_linux::agent::config::DEFAULT_PATH)]
    config: PathBuf,
}

#[derive(Args)]
struct InstallArgs {
    #[command(flatten)]
    config: AgentConfigArg,
    /// The artifact file.
    file: PathBuf,
    /// Run the reboot command once the trial boot is armed.
    #[arg(long)]
    reboot: bool,
}

#[derive(Args)]
struct DaemonArgs {
    /// The config file (JSON, mender.conf's keys; see the agent docs).
    #[arg(short = 'c', long = "config", value_name = "FILE", default_value = updraft_linux::agent::config::DEFAULT_PATH)]
    config: PathBuf,
    /// Log every request too.
    #[arg(short = 'v', long)]
    verbose: bool,
}

#[derive(Subcommand)]
enum BootEnvCommand {
    /// Print all variables (sorted, `name=value`) or the named ones; a name
    /// that is not set is an error.
    Print(BootEnvPrintArgs),
    /// Set `NAME=VALUE` (empty VALUE stores an empty value), remove `NAME`,
    /// all in one write; or apply a `fw_setenv -s` script.
    Set(BootEnvSetArgs),
    /// Do to the env what one boot through Updraft's boot script does
    /// (count a trial boot; fall back when it was not confirmed) and print
    /// the slot that boots: for emulators and demos with no real
    /// bootloader.
    Boot(BootEnvBootArgs),
}

#[derive(Args)]
struct BootEnvBootArgs {
    #[command(flatten)]
    target: BootEnvTarget,
    /// `mender_boot_part` of slots A and B.
    #[arg(long, value_name = "A,B", default_value = "2,3", value_parser = parse_partitions)]
    partitions: updraft_boot::control::SlotPartitions,
}

fn parse_partitions(s: &str) -> std::result::Result<updraft_boot::control::SlotPartitions, String> {
    let nums = s
        .split(',')
        .map(|n| n.trim().parse::<u32>())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| format!("{s:?}: {e}"))?;
    let [a, b] = nums[..] else {
        return Err(format!("{s:?}: two partition numbers, A,B"));
    };
    updraft_boot::control::SlotPartitions::new(a, b).map_err(|e| e.to_string())
}

#[derive(Args)]
struct BootEnvTarget {
    /// The fw_env.config describing the U-Boot env.
    #[arg(short = 'c', long = "config", value_name = "FILE", default_value = updraft_linux::boot_env::DEFAULT_CONFIG)]
    config: PathBuf,
    /// Use the Mender double GRUB env in DIR (holding mender_grubenv1/2)
    /// instead of a U-Boot env.
    #[arg(long = "grub", value_name = "DIR", conflicts_with = "config")]
    grub: Option<PathBuf>,
    /// libubootenv's lock file, taken (flock) around U-Boot env access.
    #[arg(long = "lock-file", value_name = "FILE", default_value = updraft_linux::boot_env::DEFAULT_LOCK)]
    lock_file: PathBuf,
    /// Fail after waiting this many seconds for the lock (default: wait as
    /// long as it takes, like fw_setenv).
    #[arg(long = "lock-timeout", value_name = "SECONDS", value_parser = parse_seconds)]
    lock_timeout: Option<std::time::Duration>,
}

fn parse_seconds(s: &str) -> std::result::Result<std::time::Duration, String> {
    s.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .and_then(|v| std::time::Duration::try_from_secs_f64(v).ok())
        .ok_or_else(|| format!("{s:?} is not a number of seconds"))
}

#[derive(Args)]
struct BootEnvPrintArgs {
    #[command(flatten)]
    target: BootEnvTarget,
    /// Print the value only (needs exactly one NAME).
    #[arg(short = 'n', long = "no-header")]
    value_only: bool,
    /// Variables to print (default: all).
    #[arg(value_name = "NAME")]
    names: Vec<String>,
}

#[derive(Args)]
struct BootEnvSetArgs {
    #[command(flatten)]
    target: BootEnvTarget,
    /// Script of `name=value` lines (`name=` removes, `#` comments, lines
    /// without `=` are skipped with a warning), `-` for standard input.
    #[arg(
        short = 's',
        long = "script",
        value_name = "SCRIPT",
        conflicts_with = "assignments"
    )]
    script: Option<PathBuf>,
    /// `NAME=VALUE` to set, `NAME` alone to remove.
    #[arg(value_name = "NAME=VALUE", required_unless_present = "script")]
    assignments: Vec<String>,
}

#[derive(Subcommand)]
enum McubootCommand {
    /// Print an image's header, TLVs and, if the file goes on past the
    /// TLVs, its trailer.
    Show(McubootShowArgs),
    /// Check an image's hash and signature: exit 0 if valid, 1 with the
    /// reason if not (like `imgtool verify`).
    Verify(McubootVerifyArgs),
    /// Mark the image in a secondary slot file for a swap at the next reset
    /// (MCUboot's boot_set_pending).
    SetPending(McubootPendingArgs),
    /// Confirm the image in a primary slot file (boot_set_confirmed).
    Confirm(McubootSlotArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum McubootModeArg {
    /// MCUBOOT_SWAP_USING_SCRATCH (the default).
    Scratch,
    /// MCUBOOT_SWAP_USING_MOVE.
    Move,
    /// MCUBOOT_SWAP_USING_OFFSET.
    Offset,
    /// MCUBOOT_OVERWRITE_ONLY (no revert; swap_info is not written).
    Overwrite,
}

impl McubootModeArg {
    fn mode(self) -> updraft_boot::mcuboot::Mode {
        use updraft_boot::mcuboot::Mode;
        match self {
            McubootModeArg::Scratch => Mode::SwapScratch,
            McubootModeArg::Move => Mode::SwapMove,
            McubootModeArg::Offset => Mode::SwapOffset,
            McubootModeArg::Overwrite => Mode::OverwriteOnly,
        }
    }
}

fn parse_erased(s: &str) -> std::result::Result<u8, String> {
    match mcuboot::parse_number(s) {
        Ok(0xff) => Ok(0xff),
        Ok(0) => Ok(0),
        _ => Err(format!("{s:?}: the erased value is 0xff or 0x00")),
    }
}

#[derive(Args)]
struct McubootShowArgs {
    /// Slot size for reading the trailer (default: the file length).
    #[arg(long, value_parser = updraft_linux::mcuboot::parse_number)]
    slot_size: Option<u64>,
    /// BOOT_MAX_ALIGN for reading the trailer (8, 16 or 32; default 8).
    #[arg(long)]
    align: Option<u32>,
    /// The bootloader's update mode.
    #[arg(long, value_enum, default_value = "scratch")]
    mode: McubootModeArg,
    /// What erased flash reads as (0xff, or 0x00 like imgtool -R 0).
    #[arg(long = "erased-value", value_name = "BYTE", default_value = "0xff", value_parser = parse_erased)]
    erased: u8,
    /// The image or slot file.
    image: PathBuf,
}

#[derive(Args)]
struct McubootVerifyArgs {
    /// Key (PEM: imgtool's public or private key). Without it only the
    /// hash is checked.
    #[arg(short = 'k', long = "key", value_name = "KEY.pem")]
    key: Option<PathBuf>,
    /// The image.
    image: PathBuf,
}

#[derive(Args)]
struct McubootSlotArgs {
    /// Slot size (decimal or 0x hex).
    #[arg(long, required = true, value_parser = updraft_linux::mcuboot::parse_number)]
    slot_size: u64,
    /// BOOT_MAX_ALIGN (8, 16 or 32), also the write size unless
    /// --write-size is given.
    #[arg(long, required = true)]
    align: u32,
    /// Flash write size (a power of two up to --align; imgtool's --align).
    #[arg(long)]
    write_size: Option<u32>,
    /// The bootloader's update mode.
    #[arg(long, value_enum, default_value = "scratch")]
    mode: McubootModeArg,
    /// What erased flash reads as (0xff, or 0x00 like imgtool -R 0).
    #[arg(long = "erased-value", value_name = "BYTE", default_value = "0xff", value_parser = parse_erased)]
    erased: u8,
    /// The slot file.
    slot: PathBuf,
}

#[derive(Args)]
struct McubootPendingArgs {
    /// Swap for good (PERM) instead of a test swap reverted unless
    /// confirmed.
    #[arg(long)]
    permanent: bool,
    #[command(flatten)]
    slot: McubootSlotArgs,
}

#[derive(Subcommand)]
enum ArtifactCommand {
    /// Print an artifact's metadata (like `mender-artifact read`).
    Read(ReadArgs),
    /// Check an artifact completely: exit 0 if valid, 1 with the error if not.
    Validate(ReadArgs),
    /// Write an artifact (like `mender-artifact write`).
    #[command(subcommand)]
    Write(Box<WriteCommand>),
    /// Sign or re-sign an artifact (like `mender-artifact sign`).
    Sign(SignArgs),
}

#[derive(Args)]
struct ReadArgs {
    /// Verification key (PEM public key: SPKI, or PKCS#1 RSA). Repeat for
    /// several keys (key rotation). With a key, unsigned artifacts fail.
    #[arg(short = 'k', long = "key", value_name = "KEY.pem")]
    keys: Vec<PathBuf>,
    /// Do not show a progress bar.
    #[arg(long)]
    no_progress: bool,
    /// The artifact, or `-` for standard input.
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

#[derive(Subcommand)]
enum WriteCommand {
    /// A full filesystem image for an A/B update.
    RootfsImage(RootfsArgs),
    /// A payload for an update module.
    ModuleImage(ModuleArgs),
    /// An artifact with no payload, to set a device's provides.
    BootstrapArtifact(BootstrapArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum CompressionArg {
    None,
    Gzip,
    Lzma,
}

#[derive(Args)]
struct CommonArgs {
    /// Name of the artifact.
    #[arg(short = 'n', long = "artifact-name", required = true)]
    name: String,
    /// Compatible device type (repeat for several).
    #[arg(short = 't', long = "device-type", required = true)]
    device_types: Vec<String>,
    /// Output file.
    #[arg(short = 'o', long = "output-path", default_value = "artifact.mender")]
    output: PathBuf,
    /// Private key to sign with (PEM: PKCS#1 or PKCS#8 RSA, SEC1 or PKCS#8 ECDSA P-256).
    #[arg(short = 'k', long = "key")]
    key: Option<PathBuf>,
    /// State script (repeat for several).
    #[arg(short = 's', long = "script")]
    scripts: Vec<PathBuf>,
    /// Artifact name(s) the device must run for this one to install.
    #[arg(short = 'N', long = "artifact-name-depends")]
    depends_names: Vec<String>,
    /// Group(s) the device must be in.
    #[arg(short = 'G', long = "depends-groups")]
    depends_groups: Vec<String>,
    /// The group this artifact provides.
    #[arg(short = 'g', long = "provides-group")]
    provides_group: Option<String>,
    /// KEY:VALUE added to the payload's provides (repeatable).
    #[arg(short = 'p', long = "provides", value_name = "KEY:VALUE")]
    provides: Vec<String>,
    /// KEY:VALUE added to the payload's depends (repeatable).
    #[arg(short = 'd', long = "depends", value_name = "KEY:VALUE")]
    depends: Vec<String>,
    /// Compression of the header and data.
    #[arg(long, value_enum, default_value = "gzip")]
    compression: CompressionArg,
    /// Artifact format version (only 3 is supported).
    #[arg(short = 'v', long = "version", default_value_t = 3)]
    format_version: u32,
    /// Do not show a progress bar.
    #[arg(long)]
    no_progress: bool,
}

#[derive(Args)]
struct SoftwareArgs {
    /// Value of the software version provide (default: the artifact name).
    #[arg(long)]
    software_version: Option<String>,
    /// Name in the software version key: `rootfs-image.NAME.version`.
    #[arg(long)]
    software_name: Option<String>,
    /// Used instead of `rootfs-image` in the software version key.
    #[arg(long)]
    software_filesystem: Option<String>,
    /// Do not add the software version provide.
    #[arg(long)]
    no_default_software_version: bool,
    /// Add an entry to clears_artifact_provides (repeatable).
    #[arg(long)]
    clears_provides: Vec<String>,
    /// Do not add the default clears_artifact_provides entries.
    #[arg(long)]
    no_default_clears_provides: bool,
}

#[derive(Args)]
struct BootstrapArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Add an entry to clears_artifact_provides (repeatable).
    #[arg(long)]
    clears_provides: Vec<String>,
}

#[derive(Args)]
struct RootfsArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    software: SoftwareArgs,
    /// The filesystem image.
    #[arg(short = 'f', long = "file", required = true)]
    file: PathBuf,
}

#[derive(Args)]
struct ModuleArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    software: SoftwareArgs,
    /// Payload type: the update module's name.
    #[arg(short = 'T', long = "type", required = true)]
    module: String,
    /// Payload file (repeatable).
    #[arg(short = 'f', long = "file")]
    files: Vec<PathBuf>,
    /// Meta-data JSON file for the payload.
    #[arg(short = 'm', long = "meta-data")]
    meta_data: Option<PathBuf>,
}

#[derive(Args)]
struct SignArgs {
    /// Private key (PEM).
    #[arg(short = 'k', long = "key", required = true)]
    key: PathBuf,
    /// Output file (default: sign in place).
    #[arg(short = 'o', long = "output-path")]
    output: Option<PathBuf>,
    /// The artifact.
    file: PathBuf,
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Artifact(ArtifactCommand::Read(a)) => read(&a, true),
        Command::Artifact(ArtifactCommand::Validate(a)) => read(&a, false),
        Command::Artifact(ArtifactCommand::Write(w)) => write_cmd(*w),
        Command::Artifact(ArtifactCommand::Sign(s)) => sign_cmd(&s),
        Command::BootEnv(c) => boot_env_cmd(c),
        Command::Mcuboot(c) => mcuboot_cmd(c),
        Command::Daemon(a) => daemon_cmd(&a),
        Command::Install(a) => {
            let mode = updraft_linux::agent::Mode::Install(a.file.clone());
            return standalone_cmd(&a.config.config, &mode, a.reboot);
        }
        Command::Commit(a) => {
            return standalone_cmd(&a.config, &updraft_linux::agent::Mode::Commit, false)
        }
        Command::Rollback(a) => {
            return standalone_cmd(&a.config, &updraft_linux::agent::Mode::Rollback, false)
        }
        Command::ShowArtifact(a) => show_artifact_cmd(&a.config),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("updraft: {e}");
            ExitCode::FAILURE
        }
    }
}

fn open(path: &Path) -> io::Result<(Box<dyn Read + Send>, Option<u64>)> {
    if path == Path::new("-") {
        return Ok((Box::new(io::stdin()), None));
    }
    let f = std::fs::File::open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    let len = f.metadata().ok().map(|m| m.len());
    Ok((Box::new(f), len))
}

fn progress_bar(len: Option<u64>, enabled: bool) -> indicatif::ProgressBar {
    if !enabled || !io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = match len {
        Some(n) => indicatif::ProgressBar::new(n),
        None => indicatif::ProgressBar::new_spinner(),
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{bytes}/{total_bytes} [{bar:40}] {bytes_per_sec} {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

fn read(a: &ReadArgs, print: bool) -> Result<()> {
    let keys = a
        .keys
        .iter()
        .map(|k| load_key(k))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let (src, len) = open(&a.file)?;
    let bar = progress_bar(len, !a.no_progress);
    let summary = artifact::summarize(src, &keys, |n| bar.inc(n));
    bar.finish_and_clear();
    let summary = summary?;
    if print {
        let mut out = io::stdout().lock();
        artifact::write_summary(&mut out, &summary)?;
    } else {
        println!(
            "Artifact file '{}' validated successfully",
            a.file.display()
        );
    }
    Ok(())
}

fn load_signing_key(path: &Path) -> Result<SigningKey> {
    let pem = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    SigningKey::from_pem(&pem).map_err(|e| format!("{}: {e}", path.display()).into())
}

fn key_value(list: &[String], flag: &str) -> Result<Vec<(String, String)>> {
    list.iter()
        .map(|kv| match kv.split_once(':') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => Err(format!("{flag} takes KEY:VALUE, got {kv:?}").into()),
        })
        .collect()
}

fn write_cmd(w: WriteCommand) -> Result<()> {
    let (common, software, payload) = match w {
        WriteCommand::RootfsImage(a) => (
            a.common,
            Some(a.software),
            write::Payload::RootfsImage { file: a.file },
        ),
        WriteCommand::ModuleImage(a) => {
            let meta_data = match &a.meta_data {
                Some(p) => {
                    let text =
                        std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
                    let v: serde_json::Value = serde_json::from_str(&text)
                        .map_err(|e| format!("{}: invalid JSON: {e}", p.display()))?;
                    if !v.is_object() {
                        return Err("meta-data must be a JSON object".into());
                    }
                    // Compact, keys sorted (serde_json's map is ordered by
                    // key), as mender-artifact writes it.
                    Some(v.to_string())
                }
                None => None,
            };
            (
                a.common,
                Some(a.software),
                write::Payload::ModuleImage {
                    module: a.module,
                    files: a.files,
                    meta_data,
                },
            )
        }
        WriteCommand::BootstrapArtifact(b) => (
            b.common,
            Some(SoftwareArgs {
                software_version: None,
                software_name: None,
                software_filesystem: None,
                no_default_software_version: false,
                clears_provides: b.clears_provides,
                no_default_clears_provides: false,
            }),
            write::Payload::Bootstrap,
        ),
    };
    if common.format_version != 3 {
        return Err(format!(
            "artifact format version {} is not supported: only version 3",
            common.format_version
        )
        .into());
    }
    let Some(sw) = software else {
        return Err("internal: no software arguments".into());
    };
    let spec = write::Spec {
        payload: Some(payload),
        name: common.name,
        device_types: common.device_types,
        depends_artifact_names: common.depends_names,
        depends_groups: common.depends_groups,
        provides_group: common.provides_group,
        provides: key_value(&common.provides, "--provides")?,
        depends: key_value(&common.depends, "--depends")?,
        scripts: common.scripts,
        software_version: sw.software_version,
        software_name: sw.software_name,
        software_filesystem: sw.software_filesystem,
        no_default_software_version: sw.no_default_software_version,
        clears_provides: sw.clears_provides,
        no_default_clears_provides: sw.no_default_clears_provides,
        compression: match common.compression {
            CompressionArg::None => write::Compression::None,
            CompressionArg::Gzip => write::Compression::Gzip,
            CompressionArg::Lzma => write::Compression::Lzma,
        },
    };
    let key = common.key.as_deref().map(load_signing_key).transpose()?;
    let total: u64 = match &spec.payload {
        Some(write::Payload::RootfsImage { file }) => {
            std::fs::metadata(file).map_or(0, |m| m.len())
        }
        Some(write::Payload::ModuleImage { files, .. }) => files
            .iter()
            .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
            .sum(),
        _ => 0,
    };
    // Two passes over the payload: hashing, then writing.
    let bar = progress_bar(Some(2 * total), !common.no_progress);
    let signer = key.as_ref().map(|k| k as &dyn updraft_core::crypto::Signer);
    let r = write::write_to_path(&spec, signer, &common.output, |n| bar.inc(n));
    bar.finish_and_clear();
    r?;
    Ok(())
}

fn sign_cmd(a: &SignArgs) -> Result<()> {
    let key = load_signing_key(&a.key)?;
    let out = a.output.clone().unwrap_or_else(|| a.file.clone());
    sign::sign_to_path(&a.file, &out, &key)?;
    Ok(())
}

fn boot_env_target(t: BootEnvTarget) -> (boot_env::Target, boot_env::LockSpec) {
    let lock = boot_env::LockSpec {
        path: t.lock_file,
        timeout: t.lock_timeout,
    };
    let target = match t.grub {
        Some(dir) => boot_env::Target::Grub { dir },
        None => boot_env::Target::Uboot { config: t.config },
    };
    (target, lock)
}

fn daemon_cmd(a: &DaemonArgs) -> Result<()> {
    use updraft_linux::agent;
    let config = agent::config::Config::load(&a.config)?;
    let log = agent::Stderr { verbose: a.verbose };
    match agent::run(&config, &agent::Mode::Daemon, &log)? {
        agent::Exit::Rebooting => Ok(()),
        other => Err(format!("the daemon stopped unexpectedly: {other:?}").into()),
    }
}

fn show_artifact_cmd(config: &Path) -> Result<()> {
    let config = updraft_linux::agent::config::Config::load(config)?;
    println!("{}", updraft_linux::agent::show_artifact(&config)?);
    Ok(())
}

/// `install`, `commit`, `rollback`: exit 0 when done, 1 on a failure, 2
/// when there was nothing to do (as `mender commit` does).
fn standalone_cmd(config: &Path, mode: &updraft_linux::agent::Mode, reboot: bool) -> ExitCode {
    use updraft_linux::agent::{self, Exit, Mode};
    let run = || -> std::result::Result<Exit, Box<dyn std::error::Error>> {
        let config = agent::config::Config::load(config)?;
        let log = agent::Stderr { verbose: false };
        let exit = agent::run(&config, mode, &log)?;
        if reboot && exit == Exit::RebootNeeded {
            let cmd = &config.reboot_command;
            std::process::Command::new(&cmd[0])
                .args(&cmd[1..])
                .status()?;
        }
        Ok(exit)
    };
    match run() {
        Ok(Exit::RebootNeeded) => {
            match mode {
                Mode::Install(_) => println!(
                    "Installed; the trial boot is armed. Reboot, then run `updraft commit` to keep \
                     the new image or `updraft rollback` to go back."
                ),
                _ => println!("Rolled back. Reboot to run the previous image."),
            }
            ExitCode::SUCCESS
        }
        Ok(Exit::Idle {
            installed,
            failure: None,
        }) => {
            match mode {
                Mode::Commit => println!("Committed: {installed} stays."),
                _ => println!("No update in progress; running {installed}."),
            }
            ExitCode::SUCCESS
        }
        Ok(Exit::Idle {
            installed,
            failure: Some(why),
        }) => match mode {
            Mode::Rollback => {
                println!("Rolled back; running {installed}.");
                ExitCode::SUCCESS
            }
            _ => {
                eprintln!("updraft: the update failed: {why}; running {installed}");
                ExitCode::FAILURE
            }
        },
        Ok(Exit::NothingToDo(why)) => {
            eprintln!("updraft: {why}");
            ExitCode::from(2)
        }
        Ok(Exit::Rebooting) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("updraft: {e}");
            ExitCode::FAILURE
        }
    }
}

fn boot_env_cmd(c: BootEnvCommand) -> Result<()> {
    match c {
        BootEnvCommand::Print(a) => {
            let (target, lock) = boot_env_target(a.target);
            let mut out = io::stdout().lock();
            boot_env::print(&target, &a.names, a.value_only, &lock, &mut out)?;
        }
        BootEnvCommand::Set(a) => {
            let (target, lock) = boot_env_target(a.target);
            let changes = match &a.script {
                Some(path) => {
                    let text = if path == Path::new("-") {
                        let mut v = Vec::new();
                        io::stdin().lock().read_to_end(&mut v)?;
                        v
                    } else {
                        std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?
                    };
                    let script = boot_env::parse_script(&text);
                    for line in &script.skipped {
                        eprintln!(
                            "updraft: {}:{line}: skipped: not `name=value`",
                            path.display()
                        );
                    }
                    script.changes
                }
                None => boot_env::parse_assignments(&a.assignments)?,
            };
            boot_env::set(&target, &changes, &lock)?;
        }
        BootEnvCommand::Boot(a) => {
            let (target, lock) = boot_env_target(a.target);
            let b = boot_env::script_boot(&target, a.partitions, &lock)?;
            let how = if b.fell_back {
                " (fell back: the trial was not confirmed)"
            } else if b.trial {
                " (trial boot)"
            } else {
                ""
            };
            println!("slot={} partition={}{how}", b.slot, b.partition);
        }
    }
    Ok(())
}

fn mcuboot_slot(a: &McubootSlotArgs) -> mcuboot::Slot {
    mcuboot::Slot {
        size: a.slot_size,
        mode: a.mode.mode(),
        max_align: a.align,
        write_size: a.write_size.unwrap_or(a.align),
        erased: a.erased,
    }
}

fn mcuboot_cmd(c: McubootCommand) -> Result<()> {
    match c {
        McubootCommand::Show(a) => {
            let mut out = io::stdout().lock();
            let align = a.align.unwrap_or(8);
            let lay = mcuboot::layout(a.mode.mode(), align, align, a.erased)?;
            mcuboot::show(&a.image, a.slot_size, &lay, &mut out)?;
        }
        McubootCommand::Verify(a) => {
            let key = a.key.as_deref().map(mcuboot::load_public_key).transpose()?;
            let v = mcuboot::verify_file(&a.image, key.as_ref())?;
            println!("{}: {}", a.image.display(), mcuboot::describe_validated(&v));
        }
        McubootCommand::SetPending(a) => {
            let line = mcuboot::set_pending(&a.slot.slot, &mcuboot_slot(&a.slot), a.permanent)?;
            println!("{line}");
        }
        McubootCommand::Confirm(a) => {
            let line = mcuboot::confirm(&a.slot, &mcuboot_slot(&a))?;
            println!("{line}");
        }
    }
    Ok(())
}
