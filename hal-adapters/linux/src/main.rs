//! The `updraft` command.
#![forbid(unsafe_code)]

use std::io::{self, IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use updraft_linux::artifact::{self, load_key};

/// Updraft: over-the-air updates, compatible with Mender.
#[derive(Parser)]
#[command(name = "updraft", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Read and check Mender artifacts.
    #[command(subcommand)]
    Artifact(ArtifactCommand),
}

#[derive(Subcommand)]
enum ArtifactCommand {
    /// Print an artifact's metadata (like `mender-artifact read`).
    Read(ReadArgs),
    /// Check an artifact completely: exit 0 if valid, 1 with the error if not.
    Validate(ReadArgs),
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Artifact(ArtifactCommand::Read(a)) => read(&a, true),
        Command::Artifact(ArtifactCommand::Validate(a)) => read(&a, false),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("updraft: {e}");
            ExitCode::FAILURE
        }
    }
}

fn open(path: &Path) -> io::Result<(Box<dyn Read>, Option<u64>)> {
    if path == Path::new("-") {
        return Ok((Box::new(io::stdin().lock()), None));
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

fn read(a: &ReadArgs, print: bool) -> Result<(), Box<dyn std::error::Error>> {
    let keys = a
        .keys
        .iter()
        .map(|k| load_key(k))
        .collect::<Result<Vec<_>, _>>()?;
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
