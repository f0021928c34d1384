//! State scripts: Mender's hooks around the update states.
//!
//! A state script is an executable named `<State>_<Enter|Leave|Error>_<NN>`
//! with an optional `_<description>` (`ArtifactInstall_Enter_05_backup`).
//! The scripts of one [`Hook`] run in name order (`NN` is two digits).
//!
//! * `Idle`, `Sync` and `Download` scripts belong to the running root
//!   file system (Mender: `/etc/mender/scripts`).
//! * `Artifact*` scripts come inside the artifact ([`Event::ScriptStart`]).
//!   A platform keeps them aside while the artifact streams in, and uses
//!   them only once the whole artifact verified (Mender keeps them in
//!   `<datadir>/scripts`).
//!
//! The [`machine`](crate::machine) asks for scripts hook by hook
//! ([`Action::FindScript`], [`Action::RunScript`]); this module only names
//! the hooks and parses script names, so a platform lists its scripts the
//! same way the machine counts them.
//!
//! Outcomes, as Mender defines them: exit code 0 goes on, 21 means "retry
//! later" (the machine runs the script again after a delay, for a bounded
//! time), anything else is a failure. A failing `Enter` or `Leave` script
//! of `Download`, `ArtifactInstall`, `ArtifactReboot` or `ArtifactCommit`
//! (`Enter` only) fails the update, after that state's `Error` scripts ran.
//! Failures are ignored in `Idle`, `Sync`, `ArtifactCommit_Leave` (too late
//! to go back), `ArtifactRollback`, `ArtifactRollbackReboot`,
//! `ArtifactFailure`, and in every `Error` script.
//!
//! [`Event::ScriptStart`]: crate::artifact::Event::ScriptStart
//! [`Action::FindScript`]: crate::machine::Action::FindScript
//! [`Action::RunScript`]: crate::machine::Action::RunScript

use core::fmt;

/// The states that have scripts (Mender's nine).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScriptState {
    /// No update in progress, between polls.
    Idle,
    /// Talking to the server (inventory, update check).
    Sync,
    /// Downloading and writing the artifact.
    Download,
    /// Arming the new image.
    ArtifactInstall,
    /// Rebooting into it (`Enter` before the reboot, `Leave` after it).
    ArtifactReboot,
    /// Committing the new image.
    ArtifactCommit,
    /// Going back to the previous image.
    ArtifactRollback,
    /// Rebooting into the previous image (`Leave` after the reboot).
    ArtifactRollbackReboot,
    /// The update failed (runs after the rollback).
    ArtifactFailure,
}

impl ScriptState {
    /// Every state, in Mender's order.
    pub const ALL: [ScriptState; 9] = [
        ScriptState::Idle,
        ScriptState::Sync,
        ScriptState::Download,
        ScriptState::ArtifactInstall,
        ScriptState::ArtifactReboot,
        ScriptState::ArtifactCommit,
        ScriptState::ArtifactRollback,
        ScriptState::ArtifactRollbackReboot,
        ScriptState::ArtifactFailure,
    ];

    /// The name used in script names.
    pub fn name(self) -> &'static str {
        match self {
            ScriptState::Idle => "Idle",
            ScriptState::Sync => "Sync",
            ScriptState::Download => "Download",
            ScriptState::ArtifactInstall => "ArtifactInstall",
            ScriptState::ArtifactReboot => "ArtifactReboot",
            ScriptState::ArtifactCommit => "ArtifactCommit",
            ScriptState::ArtifactRollback => "ArtifactRollback",
            ScriptState::ArtifactRollbackReboot => "ArtifactRollbackReboot",
            ScriptState::ArtifactFailure => "ArtifactFailure",
        }
    }

    /// Whether the scripts come with the artifact (`Artifact*`), not from
    /// the root file system.
    pub fn from_artifact(self) -> bool {
        !matches!(
            self,
            ScriptState::Idle | ScriptState::Sync | ScriptState::Download
        )
    }
}

/// When, relative to its state, a script runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum When {
    /// Before the state's work.
    Enter,
    /// After it succeeded.
    Leave,
    /// After it failed (instead of `Leave`).
    Error,
}

impl When {
    /// The name used in script names.
    pub fn name(self) -> &'static str {
        match self {
            When::Enter => "Enter",
            When::Leave => "Leave",
            When::Error => "Error",
        }
    }
}

/// One hook: the scripts of `state` that run at `when`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Hook {
    /// The state.
    pub state: ScriptState,
    /// Enter, Leave or Error.
    pub when: When,
}

impl Hook {
    /// Whether a failing script of this hook fails the update. Otherwise
    /// the failure is logged and ignored (see the [module docs](self)).
    pub fn fatal(self) -> bool {
        use ScriptState as S;
        match (self.state, self.when) {
            (_, When::Error) => false,
            (S::ArtifactCommit, When::Leave) => false,
            (S::Download | S::ArtifactInstall | S::ArtifactReboot | S::ArtifactCommit, _) => true,
            _ => false,
        }
    }

    /// Whether `name` is a script of this hook.
    pub fn matches(self, name: &str) -> bool {
        parse_name(name).is_some_and(|(hook, _)| hook == self)
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}", self.state.name(), self.when.name())
    }
}

/// Parses a script name `<State>_<When>_<NN>[_<description>]`: its hook
/// and its order number. `None` for anything else (Mender ignores such
/// files in the scripts directory; `mender-artifact` refuses them).
pub fn parse_name(name: &str) -> Option<(Hook, u8)> {
    let mut parts = name.splitn(4, '_');
    let state = parts.next()?;
    let when = parts.next()?;
    let order = parts.next()?;
    if let Some(rest) = parts.next() {
        if rest.is_empty() {
            return None;
        }
    }
    let state = ScriptState::ALL.into_iter().find(|s| s.name() == state)?;
    let when = [When::Enter, When::Leave, When::Error]
        .into_iter()
        .find(|w| w.name() == when)?;
    let b = order.as_bytes();
    if b.len() != 2 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some((Hook { state, when }, (b[0] - b'0') * 10 + (b[1] - b'0')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_as_mender_writes_them() {
        let h = |state, when| Hook { state, when };
        assert_eq!(
            parse_name("ArtifactInstall_Enter_00"),
            Some((h(ScriptState::ArtifactInstall, When::Enter), 0))
        );
        assert_eq!(
            parse_name("ArtifactCommit_Enter_05_note"),
            Some((h(ScriptState::ArtifactCommit, When::Enter), 5))
        );
        assert_eq!(
            parse_name("Sync_Leave_99_with_more_words"),
            Some((h(ScriptState::Sync, When::Leave), 99))
        );
        for bad in [
            "ArtifactInstall_Enter",
            "ArtifactInstall_Enter_5",
            "ArtifactInstall_Enter_005",
            "ArtifactInstall_Enter_0a",
            "ArtifactInstall_Enter_00_",
            "ArtifactInstall_Entry_00",
            "Artifactinstall_Enter_00",
            "ArtifactVerifyReboot_Enter_00",
            "version",
            "",
        ] {
            assert_eq!(parse_name(bad), None, "{bad}");
        }
        assert!(h(ScriptState::Download, When::Enter).matches("Download_Enter_10_ask"));
        assert!(!h(ScriptState::Download, When::Leave).matches("Download_Enter_10_ask"));
    }

    #[test]
    fn only_the_forward_states_fail_the_update() {
        use ScriptState as S;
        let expected = [
            (S::Download, When::Enter),
            (S::Download, When::Leave),
            (S::ArtifactInstall, When::Enter),
            (S::ArtifactInstall, When::Leave),
            (S::ArtifactReboot, When::Enter),
            (S::ArtifactReboot, When::Leave),
            (S::ArtifactCommit, When::Enter),
        ];
        for state in S::ALL {
            for when in [When::Enter, When::Leave, When::Error] {
                let hook = Hook { state, when };
                assert_eq!(hook.fatal(), expected.contains(&(state, when)), "{hook}");
            }
        }
    }
}
