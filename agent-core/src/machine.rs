//! The update state machine: one machine for managed (server) and
//! standalone (local file) updates, with Mender's states, driven sans-IO.
//!
//! # Driving it
//!
//! ```text
//! let mut action = agent.handle(Input::Boot { boot, image }, now);
//! loop {
//!     let input = perform(action);          // the platform does the work
//!     action = agent.handle(input, now());  // and says how it went
//! }
//! ```
//!
//! Every [`Action`] is answered by exactly one [`Input`]; each action's
//! docs say which. The machine asks for one thing at a time, so a driver
//! is a loop and a `match`, and the decisions live here only.
//!
//! # States and persistence
//!
//! An update runs through Mender's states ([`UpdateState`]). On entering
//! a state the machine first asks to persist the record (so a power cut
//! resumes there), then runs that state's steps in order:
//!
//! | state | steps (managed; standalone skips reports) | then |
//! | --- | --- | --- |
//! | Download | Download_Enter, report `downloading`, fetch (open the artifact), report `downloading`, download + write + verify, report `downloading`, Download_Leave | ArtifactInstall |
//! | ArtifactInstall | ArtifactInstall_Enter, report `installing`, arm the trial boot, ArtifactInstall_Leave | ArtifactReboot |
//! | ArtifactReboot | ArtifactReboot_Enter, report `rebooting`, reboot | (boot) ArtifactVerifyReboot |
//! | ArtifactVerifyReboot | ArtifactReboot_Leave, health check | ArtifactCommit |
//! | ArtifactCommit | ArtifactCommit_Enter, drop the token and re-authenticate, report `installing`, confirm, ArtifactCommit_Leave | Cleanup |
//! | ArtifactRollback | ArtifactRollback_Enter, roll back, ArtifactRollback_Leave | ArtifactRollbackReboot, or ArtifactFailure if the trial never ran |
//! | ArtifactRollbackReboot | ArtifactRollbackReboot_Enter, reboot | (boot) ArtifactVerifyRollbackReboot |
//! | ArtifactVerifyRollbackReboot | ArtifactRollbackReboot_Leave | ArtifactFailure |
//! | ArtifactFailure | ArtifactFailure_Enter, report `failure`, upload the log, ArtifactFailure_Leave | idle |
//! | Cleanup | report `success` | idle |
//!
//! Every state first persists the record. The three `downloading` reports
//! are the real client's: entering the download, once the server answered
//! the GET, and once the artifact is stored.
//!
//! # State scripts
//!
//! With [`Config::scripts`], each `Name_When` above is a hook: the machine
//! asks for its scripts one by one ([`Action::FindScript`],
//! [`Action::RunScript`]), and the rules of [`crate::script`] apply. A
//! failing step runs its state's `Error` scripts before the update goes to
//! ArtifactRollback or ArtifactFailure. The artifact's scripts run only
//! once it verified: an update that fails in Download runs none of them
//! (as Mender). Idle and Sync hooks wrap the polls: Idle_Leave and
//! Sync_Enter before the first request, Sync_Leave and Idle_Enter once
//! nothing more is due (or Sync_Leave before Download_Enter when an update
//! starts). The real client's substate reports accompany the artifact's
//! `Enter` scripts (`{"status":"installing","substate":"Executing script:
//! ArtifactInstall_Enter_00"}`, then `finished executing script: ...`).
//! After a power cut the interrupted state runs again, its `Enter` scripts
//! included: write scripts so they can run twice (Mender asks the same of
//! ArtifactFailure and ArtifactCommit_Leave scripts).
//!
//! After a reboot (planned or a power cut), [`Input::Boot`] tells the
//! machine what the bootloader says, and the persisted state and the
//! running image decide where to go on (see [`Agent::handle`]). Arming needs
//! the [`Verified`] proof, which only exists in memory: after a restart
//! before the trial was armed, the artifact is downloaded and verified
//! again (up to [`Config::max_attempts`] times).
//!
//! The server is told `success` only after the bootloader confirmed the
//! new image, and `failure` only once the previous image is back (or was
//! never left).

use core::fmt::Write as _;

use heapless::{String, Vec};

use crate::api::{
    self, ApiError, Method, Request, Status, BODY_MAX, NAME_MAX, PATH_MAX, SIGNATURE_MAX, TOKEN_MAX,
};
use crate::boot::{BootState, Slot, Trial, Verified};
use crate::crypto::Signer;
use crate::install::Target;
use crate::script::{Hook, ScriptState, When};
use crate::store::{Installed, StateRecord, Update, UpdateState};

/// Milliseconds. `now` is the caller's wall clock when it has one (log
/// timestamps use it); any monotonic clock works for the timers.
pub type Millis = u64;

/// How the agent behaves. Borrowed for the agent's lifetime.
#[derive(Debug, Clone, Copy)]
pub struct Config<'a> {
    /// The device type (`device_type` file).
    pub device_type: &'a str,
    /// The identity as a JSON object (`{"mac":"..."}`), sent as `id_data`.
    pub id_data: &'a str,
    /// The device's public key, SPKI PEM (`BEGIN PUBLIC KEY`).
    pub public_key_pem: &'a str,
    /// The tenant token (empty: none).
    pub tenant_token: &'a str,
    /// The payload type the slot writer installs (`rootfs-image`).
    pub payload_type: &'a str,
    /// Extra inventory attributes (`device_type` and `artifact_name` are
    /// always sent).
    pub inventory: &'a [(&'a str, &'a str)],
    /// Between update checks (`UpdatePollIntervalSeconds`).
    pub update_poll: Millis,
    /// Between inventory updates (`InventoryPollIntervalSeconds`).
    pub inventory_poll: Millis,
    /// First retry delay after an error (`RetryPollIntervalSeconds`);
    /// doubles per attempt.
    pub retry: Millis,
    /// The longest retry delay.
    pub max_retry: Millis,
    /// Talk to a server (managed mode). Without one the agent only
    /// installs what [`Input::InstallLocal`] gives it (standalone).
    pub server: bool,
    /// Attempts for a download (restarts count) and for a status report
    /// before the update gives up.
    pub max_attempts: u8,
    /// Run state scripts ([`Action::FindScript`], [`Action::RunScript`]).
    /// Off: the machine never asks for them (a device without scripts
    /// saves the round trips).
    pub scripts: bool,
    /// After a script asked to retry later (exit code 21), run it again
    /// after this long (`StateScriptRetryIntervalSeconds`).
    pub script_retry_interval: Millis,
    /// How long a script may keep asking to retry later before it counts
    /// as failed (`StateScriptRetryTimeoutSeconds`).
    pub script_retry_timeout: Millis,
}

/// What happened, in answer to the last [`Action`].
// `Downloaded` carries the new provides by value (no heap to box them in);
// an input lives for one call.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
#[non_exhaustive]
pub enum Input<'a> {
    /// The device (re)started: the bootloader's state and, when the
    /// platform can tell, the artifact name the running image carries
    /// (needed where the slot number does not say which image runs, as
    /// with MCUboot's swap). Always the first input.
    Boot {
        /// What the bootloader says.
        boot: BootState,
        /// The running image's artifact name, if known.
        image: Option<&'a str>,
    },
    /// The answer to [`Action::Send`].
    Response {
        /// HTTP status code.
        status: u16,
        /// The body.
        body: &'a [u8],
    },
    /// [`Action::Send`] failed below HTTP (connection, TLS, timeout).
    NetworkError,
    /// The deadline of [`Action::Wait`] passed.
    Timer,
    /// The last persist / arm / confirm / roll back / health check
    /// succeeded.
    Done,
    /// The last persist / arm / confirm / roll back / health check failed,
    /// with the reason (kept for the deployment log).
    Failed(&'a str),
    /// [`Action::Download`] finished: every digest (and the signature, with
    /// keys) matched.
    Downloaded {
        /// The proof the trial boot needs.
        proof: Verified,
        /// What the device provides once this artifact is committed.
        next: Installed,
    },
    /// The answer to [`Action::FindScript`]: the script's file name, or
    /// `None` when the hook has no script at that index.
    Script {
        /// The script (`ArtifactInstall_Enter_00`), or none.
        name: Option<&'a str>,
    },
    /// [`Action::RunScript`]: the script exited with 21 ("retry later").
    /// The other answers are [`Input::Done`] (exit 0) and
    /// [`Input::Failed`] (anything else, with its standard error).
    RetryLater,
    /// [`Action::Fetch`] or [`Action::Download`] failed. `retry`: a network error or a 5xx
    /// (back off and try again); otherwise (4xx, an invalid or
    /// incompatible artifact) the update fails.
    DownloadFailed {
        /// What went wrong.
        reason: &'a str,
        /// Worth another attempt.
        retry: bool,
    },
    /// Standalone: install the artifact at this path (only while idle).
    InstallLocal {
        /// The artifact file.
        path: &'a str,
    },
}

/// What the caller must do next. Each variant says which [`Input`]
/// answers it.
#[derive(Debug)]
#[non_exhaustive]
pub enum Action<'a> {
    /// Send this request to the server; answer [`Input::Response`] or
    /// [`Input::NetworkError`].
    Send(Request<'a>),
    /// Open `uri`: send the GET and wait for the response headers (a
    /// file: open it), and keep the stream for the [`Action::Download`]
    /// that follows. With `resume`, continue the partial install the
    /// driver still holds (`Range: bytes=N-`). Answer [`Input::Done`] once
    /// the response is a success, or [`Input::DownloadFailed`].
    Fetch {
        /// URL (managed) or file path (standalone).
        uri: &'a str,
        /// Continue an interrupted download of the same artifact.
        resume: bool,
    },
    /// Stream the artifact [`Action::Fetch`] opened (re-opening `uri` with
    /// `Range` if it breaks off) through an
    /// [`Install`](crate::install::Install) for `target`; answer
    /// [`Input::Downloaded`] or [`Input::DownloadFailed`].
    Download {
        /// URL (managed) or file path (standalone).
        uri: &'a str,
        /// What to check the artifact against and where to write it.
        target: Target<'a>,
        /// Continue an interrupted download of the same artifact.
        resume: bool,
    },
    /// Save this record with the [`StateStore`](crate::store::StateStore);
    /// answer [`Input::Done`] or [`Input::Failed`].
    Persist(&'a StateRecord),
    /// `BootControl::arm_trial(slot, proof)`; answer `Done` or `Failed`.
    Arm {
        /// The slot written.
        slot: Slot,
        /// The proof.
        proof: &'a Verified,
    },
    /// `BootControl::confirm()`; answer `Done` or `Failed`.
    Confirm,
    /// `BootControl::roll_back()`; answer `Done` or `Failed`.
    RollBack,
    /// Reboot the device; the next input is [`Input::Boot`].
    Reboot,
    /// Run the health checks of the new image (state scripts
    /// `ArtifactVerifyReboot`, application checks); answer `Done` or
    /// `Failed`.
    CheckHealth,
    /// Name the script of `hook` at `index` (0, 1, ...), in name order;
    /// answer [`Input::Script`] (`None` past the last one). Only `Artifact*`
    /// scripts of an artifact that verified completely count.
    FindScript {
        /// The hook.
        hook: Hook,
        /// Which script of the hook.
        index: u8,
    },
    /// Run the state script `name` (of `hook`), with its standard error
    /// kept for the deployment log; answer [`Input::Done`] (exit 0),
    /// [`Input::RetryLater`] (exit 21) or [`Input::Failed`].
    RunScript {
        /// The hook.
        hook: Hook,
        /// The script's file name, as [`Input::Script`] gave it.
        name: &'a str,
    },
    /// Nothing to do until `until` (or an [`Input::InstallLocal`]); answer
    /// [`Input::Timer`].
    Wait {
        /// The deadline.
        until: Millis,
    },
}

/// Which request is outstanding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Req {
    Auth,
    Inventory {
        patch: bool,
    },
    Next(Flavour),
    Report(Status),
    /// A state script starts (`start`) or ended, as a substate report.
    Substate {
        status: Status,
        start: bool,
    },
    Log,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavour {
    V2,
    V1Post,
    V1Get,
}

/// The steps of a state, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Persist,
    Script(Hook),
    Report(Status),
    Fetch,
    Download,
    Arm,
    Reboot,
    Health,
    ReAuth,
    Confirm,
    RollBack,
    Log,
}

/// The step running the scripts of one hook (a literal, so the step tables
/// stay static).
macro_rules! script {
    ($state:ident, $when:ident) => {
        Step::Script(Hook {
            state: ScriptState::$state,
            when: When::$when,
        })
    };
}

fn steps(state: UpdateState) -> &'static [Step] {
    use Step::*;
    match state {
        UpdateState::Download => &[
            Persist,
            script!(Download, Enter),
            Report(Status::Downloading),
            Fetch,
            Report(Status::Downloading),
            Download,
            Report(Status::Downloading),
            script!(Download, Leave),
        ],
        UpdateState::ArtifactInstall => &[
            Persist,
            script!(ArtifactInstall, Enter),
            Report(Status::Installing),
            Arm,
            script!(ArtifactInstall, Leave),
        ],
        UpdateState::ArtifactReboot => &[
            Persist,
            script!(ArtifactReboot, Enter),
            Report(Status::Rebooting),
            Reboot,
        ],
        UpdateState::ArtifactVerifyReboot => &[Persist, script!(ArtifactReboot, Leave), Health],
        UpdateState::ArtifactCommit => &[
            Persist,
            script!(ArtifactCommit, Enter),
            ReAuth,
            Report(Status::Installing),
            Confirm,
            script!(ArtifactCommit, Leave),
        ],
        UpdateState::ArtifactRollback => &[
            Persist,
            script!(ArtifactRollback, Enter),
            RollBack,
            script!(ArtifactRollback, Leave),
        ],
        UpdateState::ArtifactRollbackReboot => {
            &[Persist, script!(ArtifactRollbackReboot, Enter), Reboot]
        }
        UpdateState::ArtifactVerifyRollbackReboot => {
            &[Persist, script!(ArtifactRollbackReboot, Leave)]
        }
        UpdateState::ArtifactFailure => &[
            Persist,
            script!(ArtifactFailure, Enter),
            Report(Status::Failure),
            Log,
            script!(ArtifactFailure, Leave),
        ],
        UpdateState::Cleanup => &[Persist, Report(Status::Success)],
    }
}

/// The status word of the substate reports around an `Enter` script of
/// the artifact, as the real client sends them (`rebooting` with
/// ArtifactCommit_Enter is its 3.4 quirk). Other hooks send none: the
/// client was seen reporting only these.
fn substate_status(hook: Hook) -> Option<Status> {
    if hook.when != When::Enter {
        return None;
    }
    match hook.state {
        ScriptState::ArtifactInstall => Some(Status::Installing),
        ScriptState::ArtifactReboot | ScriptState::ArtifactCommit => Some(Status::Rebooting),
        _ => None,
    }
}

/// Where a hook run is in its current script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Asking for the script at `index`.
    Find,
    /// Reporting that it starts.
    Announce,
    /// Running it.
    Run,
    /// Reporting that it ended.
    Finish,
}

/// What follows a hook run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    /// The update step [`Step::Script`]: advance, or fail the update.
    Step,
    /// The `Error` scripts of a failed state: then go to this state.
    Go(UpdateState),
    /// An Idle/Sync hook between polls (or before an update starts).
    Poll,
}

/// The scripts of one hook, run one by one.
#[derive(Debug)]
struct Run {
    hook: Hook,
    after: After,
    index: u8,
    phase: Phase,
    name: String<NAME_MAX>,
    /// When the current script first asked to retry later.
    retry_since: Option<Millis>,
    /// Send substate reports (managed, an `Enter` hook of an update).
    status: Option<Status>,
}

/// Where the idle loop is in Mender's Idle/Sync hooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Run Idle_Enter next.
    EnterIdle,
    /// Idle: Idle_Leave runs before the next request.
    Idle,
    /// Run Sync_Enter next.
    EnterSync,
    /// Talking to the server: Sync_Leave runs once nothing is due.
    Syncing,
}

/// The idle loop's position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Idle {
    /// Running the update steps.
    Updating,
    /// Saving the record after an update ended.
    Closing,
    /// Polling.
    Polling,
}

/// The agent. See the [module docs](self).
pub struct Agent<'c, S: Signer + ?Sized> {
    cfg: Config<'c>,
    signer: &'c S,
    rec: StateRecord,
    boot: Option<BootState>,
    /// The new image runs on trial (from the last boot).
    on_trial: bool,
    mode: Idle,
    step: usize,
    proof: Option<Verified>,
    token: Option<String<TOKEN_MAX>>,
    outstanding: Option<Req>,
    /// A request that got 401 and is re-sent after re-authenticating.
    after_auth: Option<Req>,
    reauthed: bool,
    attempts: u8,
    wait_until: Option<Millis>,
    resume: bool,
    next_poll: Millis,
    next_inventory: Millis,
    /// The offered deployment (id, name, uri) before it starts.
    offer: Option<api::Deployment>,
    /// The hook whose scripts are running.
    run: Option<Run>,
    stage: Stage,
    body: Vec<u8, BODY_MAX>,
    path: String<PATH_MAX>,
    sig: String<SIGNATURE_MAX>,
}

impl<'c, S: Signer + ?Sized> Agent<'c, S> {
    /// An agent with the record the [`StateStore`](crate::store::StateStore)
    /// loaded, or, on a first start, `installed` (from
    /// `/etc/mender/artifact_info` or the build).
    pub fn new(
        cfg: Config<'c>,
        signer: &'c S,
        record: Option<StateRecord>,
        installed: Installed,
    ) -> Self {
        let rec = record.unwrap_or(StateRecord {
            installed,
            update: None,
        });
        let mode = if rec.update.is_some() {
            Idle::Updating
        } else {
            Idle::Polling
        };
        Agent {
            cfg,
            signer,
            rec,
            boot: None,
            on_trial: false,
            mode,
            step: 0,
            proof: None,
            token: None,
            outstanding: None,
            after_auth: None,
            reauthed: false,
            attempts: 0,
            wait_until: None,
            resume: false,
            next_poll: 0,
            next_inventory: 0,
            offer: None,
            run: None,
            stage: Stage::EnterIdle,
            body: Vec::new(),
            path: String::new(),
            sig: String::new(),
        }
    }

    /// The current record (what the agent believes is installed, and the
    /// update in progress).
    pub fn record(&self) -> &StateRecord {
        &self.rec
    }

    /// The state of the update in progress, if any.
    pub fn update_state(&self) -> Option<UpdateState> {
        self.rec.update.as_ref().map(|u| u.state)
    }

    /// Whether the agent is idle (no update in progress).
    pub fn is_idle(&self) -> bool {
        self.mode == Idle::Polling
    }

    /// Feeds what happened; returns what to do next.
    pub fn handle(&mut self, input: Input<'_>, now: Millis) -> Action<'_> {
        self.apply(input, now);
        self.next(now)
    }

    fn retry_delay(&self) -> Millis {
        let shift = u32::from(self.attempts.min(16));
        self.cfg
            .retry
            .saturating_mul(1u64 << shift)
            .min(self.cfg.max_retry)
    }

    fn back_off(&mut self, now: Millis) {
        self.wait_until = Some(now.saturating_add(self.retry_delay()));
        self.attempts = self.attempts.saturating_add(1);
    }

    fn standalone(&self) -> bool {
        self.rec.update.as_ref().is_some_and(|u| u.standalone)
    }

    fn set_reason(&mut self, reason: &str) {
        if let Some(u) = self.rec.update.as_mut() {
            if u.reason.is_empty() {
                for c in reason.chars() {
                    if u.reason.push(c).is_err() {
                        break;
                    }
                }
            }
        }
    }

    fn go(&mut self, state: UpdateState) {
        if let Some(u) = self.rec.update.as_mut() {
            u.state = state;
        }
        self.step = 0;
        self.attempts = 0;
        self.resume = false;
        self.mode = Idle::Updating;
    }

    fn fail(&mut self, reason: &str) {
        if self.rec.update.is_none() {
            return;
        }
        self.set_reason(reason);
        // Past the arm, the new image may boot: go back first.
        let armed = matches!(
            self.update_state(),
            Some(
                UpdateState::ArtifactReboot
                    | UpdateState::ArtifactVerifyReboot
                    | UpdateState::ArtifactCommit
            )
        ) || (self.update_state() == Some(UpdateState::ArtifactInstall)
            && self.current_step() == Some(Step::Arm));
        let target = if armed {
            UpdateState::ArtifactRollback
        } else {
            UpdateState::ArtifactFailure
        };
        // The failed state's Error scripts run first (Mender has them for
        // the forward states only; ArtifactVerifyReboot is part of
        // ArtifactReboot there).
        let errors = match self.update_state() {
            Some(UpdateState::Download) => Some(ScriptState::Download),
            Some(UpdateState::ArtifactInstall) => Some(ScriptState::ArtifactInstall),
            Some(UpdateState::ArtifactReboot | UpdateState::ArtifactVerifyReboot) => {
                Some(ScriptState::ArtifactReboot)
            }
            Some(UpdateState::ArtifactCommit) => Some(ScriptState::ArtifactCommit),
            _ => None,
        };
        self.run = None;
        match errors {
            Some(state) if self.cfg.scripts => {
                self.mode = Idle::Updating;
                self.start_run(
                    Hook {
                        state,
                        when: When::Error,
                    },
                    After::Go(target),
                );
            }
            _ => self.go(target),
        }
    }

    fn start_run(&mut self, hook: Hook, after: After) {
        let managed = !self.standalone() && self.cfg.server;
        self.run = Some(Run {
            hook,
            after,
            index: 0,
            phase: Phase::Find,
            name: String::new(),
            retry_since: None,
            status: substate_status(hook).filter(|_| managed && after == After::Step),
        });
    }

    /// The hook's scripts all ran (or a fatal one failed, with why).
    fn end_run(&mut self, failed: Option<&str>) {
        let Some(run) = self.run.take() else {
            return;
        };
        match (run.after, failed) {
            (After::Step, None) => self.advance(),
            (After::Step, Some(why)) => self.fail(why),
            (After::Go(state), _) => self.go(state),
            (After::Poll, _) => {}
        }
    }

    /// The current script is done: report its end, or on to the next.
    fn script_done(&mut self) {
        if let Some(run) = self.run.as_mut() {
            if run.phase != Phase::Finish && run.status.is_some() {
                run.phase = Phase::Finish;
            } else {
                run.phase = Phase::Find;
                run.index = run.index.saturating_add(1);
                run.retry_since = None;
            }
        }
    }

    fn script_failed(&mut self, reason: &str) {
        let Some(run) = self.run.as_ref() else {
            return;
        };
        let fatal = run.hook.fatal() && run.after == After::Step;
        if !fatal {
            // Logged by the driver, ignored here (Mender's rule).
            self.script_done();
            return;
        }
        let mut why: String<{ NAME_MAX + 160 }> = String::new();
        let _ = write!(why, "state script {} failed: ", run.name);
        for c in reason.chars() {
            if why.push(c).is_err() {
                break;
            }
        }
        self.end_run(Some(why.as_str()));
    }

    fn script_retry_later(&mut self, now: Millis) {
        let (timeout, interval) = (
            self.cfg.script_retry_timeout,
            self.cfg.script_retry_interval,
        );
        let Some(run) = self.run.as_mut() else {
            return;
        };
        let since = *run.retry_since.get_or_insert(now);
        if run.hook.when == When::Error || now.saturating_sub(since) >= timeout {
            self.script_failed(
                "it kept asking to retry later (exit code 21) past the retry timeout",
            );
        } else {
            self.wait_until = Some(now.saturating_add(interval));
        }
    }

    fn current_step(&self) -> Option<Step> {
        let state = self.update_state()?;
        steps(state).get(self.step).copied()
    }

    /// The current step succeeded: move on, and across states at the end.
    fn advance(&mut self) {
        self.step += 1;
        self.attempts = 0;
        let Some(state) = self.update_state() else {
            return;
        };
        if self.step < steps(state).len() {
            return;
        }
        match state {
            UpdateState::Download => self.go(UpdateState::ArtifactInstall),
            UpdateState::ArtifactInstall => self.go(UpdateState::ArtifactReboot),
            // Reboot steps end with Input::Boot.
            UpdateState::ArtifactReboot | UpdateState::ArtifactRollbackReboot => {}
            UpdateState::ArtifactVerifyReboot => self.go(UpdateState::ArtifactCommit),
            UpdateState::ArtifactCommit => {
                self.on_trial = false;
                self.go(UpdateState::Cleanup)
            }
            UpdateState::ArtifactRollback => {
                if self.on_trial {
                    self.go(UpdateState::ArtifactRollbackReboot)
                } else {
                    self.go(UpdateState::ArtifactFailure)
                }
            }
            UpdateState::ArtifactVerifyRollbackReboot => self.go(UpdateState::ArtifactFailure),
            UpdateState::ArtifactFailure | UpdateState::Cleanup => self.close(),
        }
    }

    /// The update ended (reported): apply the outcome and save.
    fn close(&mut self) {
        if let Some(u) = self.rec.update.take() {
            if u.state == UpdateState::Cleanup {
                if let Some(next) = u.next {
                    self.rec.installed = next;
                }
            }
        }
        self.proof = None;
        self.on_trial = false;
        self.stage = Stage::EnterIdle;
        self.mode = Idle::Closing;
        self.step = 0;
        self.attempts = 0;
    }

    fn apply(&mut self, input: Input<'_>, now: Millis) {
        let phase = self.run.as_ref().map(|r| r.phase);
        match (phase, &input) {
            (Some(Phase::Find), Input::Script { name }) => {
                match name {
                    None => self.end_run(None),
                    Some(name) => {
                        if let Some(run) = self.run.as_mut() {
                            run.name.clear();
                            if run.name.push_str(name).is_err() {
                                self.script_failed("its name is too long");
                                return;
                            }
                            run.phase = if run.status.is_some() {
                                Phase::Announce
                            } else {
                                Phase::Run
                            };
                        }
                    }
                }
                return;
            }
            (Some(Phase::Run), Input::Done) => return self.script_done(),
            (Some(Phase::Run), Input::Failed(reason)) => return self.script_failed(reason),
            (Some(Phase::Run), Input::RetryLater) => return self.script_retry_later(now),
            _ => {}
        }
        match input {
            Input::Boot { boot, image } => self.booted(boot, image),
            Input::Timer => {}
            Input::InstallLocal { path } => {
                if self.mode == Idle::Polling && self.outstanding.is_none() {
                    self.start(None, path, true);
                }
            }
            Input::Response { status, body } => self.response(status, body, now),
            Input::NetworkError => {
                if let Some(req) = self.outstanding.take() {
                    self.request_failed(req, now);
                }
            }
            Input::Done => match self.mode {
                Idle::Closing => {
                    self.mode = Idle::Polling;
                    self.next_inventory = now;
                    self.next_poll = now;
                    self.attempts = 0;
                }
                Idle::Updating => self.advance(),
                Idle::Polling => {}
            },
            Input::Failed(reason) => self.step_failed(reason, now),
            // Answers to a hook run that is not running (stale).
            Input::Script { .. } | Input::RetryLater => {}
            Input::Downloaded { proof, next } => {
                if self.current_step() == Some(Step::Download) {
                    self.proof = Some(proof);
                    if let Some(u) = self.rec.update.as_mut() {
                        u.next = Some(next);
                    }
                    self.advance();
                }
            }
            Input::DownloadFailed { reason, retry } => {
                if !matches!(self.current_step(), Some(Step::Fetch | Step::Download)) {
                    return;
                }
                let attempts = self.rec.update.as_ref().map_or(0, |u| u.attempts);
                if retry && attempts.saturating_add(1) < self.cfg.max_attempts {
                    if let Some(u) = self.rec.update.as_mut() {
                        u.attempts += 1;
                    }
                    // The delay grows with the download's attempts (the
                    // reports in between reset the step's count).
                    self.attempts = attempts;
                    self.back_off(now);
                    self.resume = true;
                    // Open the artifact again (and report it again).
                    if let Some(i) = steps(UpdateState::Download)
                        .iter()
                        .position(|s| *s == Step::Fetch)
                    {
                        self.step = i;
                    }
                } else {
                    self.fail(reason);
                }
            }
        }
    }

    fn booted(&mut self, boot: BootState, image: Option<&str>) {
        self.boot = Some(boot);
        self.token = None;
        self.outstanding = None;
        self.wait_until = None;
        self.proof = None;
        self.run = None;
        self.stage = Stage::EnterIdle;
        let Some(u) = self.rec.update.as_ref() else {
            self.mode = Idle::Polling;
            return;
        };
        let running_new = match image {
            Some(name) => name == u.artifact_name.as_str(),
            None => boot.active == u.to,
        };
        let trial = matches!(boot.trial, Trial::Running { .. });
        let armed = boot.trial == Trial::Armed(u.to);
        self.on_trial = running_new && trial;
        let (state, attempts) = (u.state, u.attempts);
        let redownload = |me: &mut Self| {
            if attempts.saturating_add(1) >= me.cfg.max_attempts {
                me.fail("the download was interrupted too many times");
            } else {
                if let Some(u) = me.rec.update.as_mut() {
                    u.attempts += 1;
                }
                me.go(UpdateState::Download);
            }
        };
        use UpdateState as U;
        match state {
            U::Download => redownload(self),
            U::ArtifactInstall => {
                if armed {
                    self.go(U::ArtifactReboot)
                } else if self.on_trial {
                    self.go(U::ArtifactVerifyReboot)
                } else {
                    // Arming may not have happened: no proof survives a
                    // restart, so verify the artifact again.
                    redownload(self)
                }
            }
            U::ArtifactReboot => {
                if armed {
                    self.go(U::ArtifactReboot)
                } else if self.on_trial {
                    self.go(U::ArtifactVerifyReboot)
                } else {
                    self.set_reason(
                        "the new image did not boot: the bootloader went back to the previous one",
                    );
                    self.go(U::ArtifactFailure);
                }
            }
            U::ArtifactVerifyReboot | U::ArtifactCommit => {
                if self.on_trial {
                    self.go(state)
                } else if running_new {
                    // Confirmed before the cut: finish the commit.
                    self.go(U::ArtifactCommit)
                } else {
                    self.set_reason(
                        "the new image stopped before it was committed: the bootloader went \
                         back to the previous one",
                    );
                    self.go(U::ArtifactFailure);
                }
            }
            U::ArtifactRollback | U::ArtifactRollbackReboot => {
                if self.on_trial || armed {
                    self.go(U::ArtifactRollback)
                } else {
                    self.go(U::ArtifactVerifyRollbackReboot)
                }
            }
            U::ArtifactVerifyRollbackReboot => self.go(U::ArtifactVerifyRollbackReboot),
            U::ArtifactFailure | U::Cleanup => self.go(state),
        }
    }

    fn step_failed(&mut self, reason: &str, now: Millis) {
        match self.mode {
            Idle::Closing => self.back_off(now),
            Idle::Polling => {}
            Idle::Updating => match self.current_step() {
                Some(Step::Persist | Step::RollBack) => self.back_off(now),
                Some(Step::Confirm) => {
                    if self.attempts.saturating_add(1) >= self.cfg.max_attempts {
                        self.fail(reason)
                    } else {
                        self.back_off(now)
                    }
                }
                Some(Step::Arm) | Some(Step::Health) => self.fail(reason),
                _ => {}
            },
        }
    }

    fn start(&mut self, offer: Option<api::Deployment>, uri: &str, standalone: bool) {
        let active = self.boot.map_or(Slot::A, |b| b.active);
        let mut u = Update {
            state: UpdateState::Download,
            deployment_id: String::new(),
            artifact_name: String::new(),
            uri: String::new(),
            from: active,
            to: active.other(),
            attempts: 0,
            next: None,
            reason: String::new(),
            standalone,
        };
        let fits = match &offer {
            Some(d) => {
                u.deployment_id = d.id.clone();
                u.artifact_name = d.artifact_name.clone();
                u.uri.push_str(d.uri.as_str()).is_ok()
            }
            None => u.uri.push_str(uri).is_ok(),
        };
        if !fits {
            return;
        }
        self.rec.update = Some(u);
        self.go(UpdateState::Download);
        if self.stage == Stage::Syncing && self.cfg.scripts {
            // Sync ends before Download_Enter; Idle_Enter follows the
            // update.
            self.stage = Stage::EnterIdle;
            self.start_run(
                Hook {
                    state: ScriptState::Sync,
                    when: When::Leave,
                },
                After::Poll,
            );
        }
    }

    fn response(&mut self, status: u16, body: &[u8], now: Millis) {
        let Some(req) = self.outstanding.take() else {
            return;
        };
        if status == 401 && req != Req::Auth {
            self.token = None;
            if self.reauthed {
                self.reauthed = false;
                self.request_failed(req, now);
            } else {
                self.after_auth = Some(req);
            }
            return;
        }
        match req {
            Req::Auth => {
                if status == 200 {
                    let mut t = String::new();
                    let ok = core::str::from_utf8(body)
                        .ok()
                        .map(str::trim)
                        .is_some_and(|s| !s.is_empty() && t.push_str(s).is_ok());
                    if ok {
                        self.token = Some(t);
                        self.reauthed = self.after_auth.is_some();
                        if self.current_step() == Some(Step::ReAuth) && self.mode == Idle::Updating
                        {
                            self.advance();
                        }
                        return;
                    }
                }
                // The request waiting for the token stays queued.
                self.request_failed(Req::Auth, now);
            }
            Req::Inventory { patch } => match status {
                200 => {
                    self.reauthed = false;
                    self.next_inventory = now.saturating_add(self.cfg.inventory_poll);
                }
                405 if !patch => {
                    self.after_auth = Some(Req::Inventory { patch: true });
                }
                _ => self.request_failed(req, now),
            },
            Req::Next(flavour) => {
                self.reauthed = false;
                match (status, flavour) {
                    (404, Flavour::V2) => self.after_auth = Some(Req::Next(Flavour::V1Post)),
                    (404, Flavour::V1Post) => self.after_auth = Some(Req::Next(Flavour::V1Get)),
                    (204, _) => {
                        self.attempts = 0;
                        self.next_poll = now.saturating_add(self.cfg.update_poll);
                    }
                    (200, _) => {
                        self.attempts = 0;
                        self.next_poll = now.saturating_add(self.cfg.update_poll);
                        match api::parse_next(body, self.cfg.device_type) {
                            Ok(d) => {
                                if d.artifact_name.as_str()
                                    == self.rec.installed.artifact_name.as_str()
                                {
                                    self.offer = Some(d);
                                    self.after_auth = Some(Req::Report(Status::AlreadyInstalled));
                                } else {
                                    self.start(Some(d), "", false);
                                }
                            }
                            Err(_) => self.request_failed(req, now),
                        }
                    }
                    _ => self.request_failed(req, now),
                }
            }
            Req::Substate { .. } => {
                self.reauthed = false;
                if status == 409 {
                    self.run = None;
                    self.fail("the deployment was aborted on the server");
                } else {
                    // Informative: whatever the answer, the script goes on.
                    self.substate_sent();
                }
            }
            Req::Report(Status::AlreadyInstalled) => {
                // Reported once, whatever the answer; the next poll asks
                // again.
                self.reauthed = false;
                self.offer = None;
            }
            Req::Report(s) => {
                self.reauthed = false;
                match status {
                    204 => self.advance(),
                    409 => {
                        // Aborted on the server. The final reports are
                        // delivered either way.
                        if matches!(s, Status::Success | Status::Failure) {
                            self.advance()
                        } else {
                            self.fail("the deployment was aborted on the server");
                        }
                    }
                    _ => self.request_failed(req, now),
                }
            }
            Req::Log => {
                self.reauthed = false;
                match status {
                    204 | 200 => self.advance(),
                    // The log is best effort: give up after the attempts.
                    _ if self.attempts.saturating_add(1) >= self.cfg.max_attempts => self.advance(),
                    _ => self.request_failed(req, now),
                }
            }
        }
    }

    fn request_failed(&mut self, req: Req, now: Millis) {
        self.reauthed = false;
        match req {
            Req::Auth if self.mode == Idle::Polling => self.back_off(now),
            Req::Auth | Req::Inventory { .. } | Req::Next(_) => {
                if self.mode == Idle::Polling {
                    // Idle: the next poll retries; back off meanwhile.
                    if matches!(req, Req::Inventory { .. }) {
                        self.next_inventory = now.saturating_add(self.retry_delay());
                    } else {
                        self.next_poll = now.saturating_add(self.retry_delay());
                    }
                    self.attempts = self.attempts.saturating_add(1);
                } else if self.current_step() == Some(Step::ReAuth)
                    && self.attempts.saturating_add(1) >= self.cfg.max_attempts
                {
                    // Committing needs the server: without it, go back.
                    self.fail("could not reach the server to commit the update");
                } else {
                    self.back_off(now);
                }
            }
            Req::Report(Status::AlreadyInstalled) => {
                self.offer = None;
            }
            Req::Substate { .. } => self.substate_sent(),
            Req::Report(s) => {
                let last = self.attempts.saturating_add(1) >= self.cfg.max_attempts;
                match s {
                    // The final report is the truth: keep trying.
                    Status::Success | Status::Failure => self.back_off(now),
                    // Committing needs the server: without it, go back.
                    Status::Installing
                        if last && self.update_state() == Some(UpdateState::ArtifactCommit) =>
                    {
                        self.fail("could not report to the server before committing")
                    }
                    // Progress reports are informative: move on.
                    _ if last => self.advance(),
                    _ => self.back_off(now),
                }
            }
            Req::Log => {
                if self.attempts.saturating_add(1) >= self.cfg.max_attempts {
                    self.advance()
                } else {
                    self.back_off(now)
                }
            }
        }
    }

    /// A substate report went out (or could not): on with the script.
    fn substate_sent(&mut self) {
        match self.run.as_ref().map(|r| r.phase) {
            Some(Phase::Announce) => {
                if let Some(run) = self.run.as_mut() {
                    run.phase = Phase::Run;
                }
            }
            Some(Phase::Finish) => self.script_done(),
            _ => {}
        }
    }

    /// Builds the request for `req` into the agent's buffers.
    fn build(&mut self, req: Req, now: Millis) -> Result<(), ApiError> {
        self.path.clear();
        match req {
            Req::Auth => {
                api::auth_body(
                    &mut self.body,
                    self.cfg.id_data,
                    self.cfg.tenant_token,
                    self.cfg.public_key_pem,
                )?;
                api::sign_body(self.signer, &self.body, &mut self.sig)?;
                push(&mut self.path, api::AUTH_PATH)?;
            }
            Req::Inventory { .. } => {
                let fixed = [
                    ("device_type", self.cfg.device_type),
                    ("artifact_name", self.rec.installed.artifact_name.as_str()),
                ];
                let provides = self
                    .rec
                    .installed
                    .provides
                    .iter()
                    .map(|p| (p.key.as_str(), p.value.as_str()));
                let extra = self.cfg.inventory.iter().copied();
                api::inventory_body(
                    &mut self.body,
                    fixed.into_iter().chain(provides).chain(extra),
                )?;
                push(&mut self.path, api::INVENTORY_PATH)?;
            }
            Req::Next(f) => {
                let i = &self.rec.installed;
                let fixed = [
                    ("artifact_name", i.artifact_name.as_str()),
                    ("device_type", self.cfg.device_type),
                ];
                let group = (!i.artifact_group.is_empty())
                    .then_some(("artifact_group", i.artifact_group.as_str()));
                let provides = i
                    .provides
                    .iter()
                    .map(|p| (p.key.as_str(), p.value.as_str()));
                let all = fixed.into_iter().chain(group).chain(provides);
                match f {
                    Flavour::V2 => {
                        api::next_v2_body(&mut self.body, all)?;
                        push(&mut self.path, api::NEXT_V2_PATH)?;
                    }
                    Flavour::V1Post => {
                        api::next_v1_body(&mut self.body, fixed.into_iter())?;
                        push(&mut self.path, api::NEXT_V1_PATH)?;
                    }
                    Flavour::V1Get => {
                        self.body.clear();
                        api::next_v1_get_path(
                            &mut self.path,
                            i.artifact_name.as_str(),
                            self.cfg.device_type,
                        )?;
                    }
                }
            }
            Req::Report(s) => {
                let id = match (&self.offer, &self.rec.update) {
                    (Some(d), _) if s == Status::AlreadyInstalled => d.id.as_str(),
                    (_, Some(u)) => u.deployment_id.as_str(),
                    _ => "",
                };
                api::deployment_path(&mut self.path, id, "status")?;
                api::status_body(&mut self.body, s)?;
            }
            Req::Substate { status, start } => {
                let id = self
                    .rec
                    .update
                    .as_ref()
                    .map_or("", |u| u.deployment_id.as_str());
                api::deployment_path(&mut self.path, id, "status")?;
                let name = self.run.as_ref().map_or("", |r| r.name.as_str());
                let mut text: String<{ NAME_MAX + 32 }> = String::new();
                let verb = if start {
                    "Executing script"
                } else {
                    "finished executing script"
                };
                write!(text, "{verb}: {name}").map_err(|_| ApiError::TooLarge("substate"))?;
                api::substate_body(&mut self.body, status, &text)?;
            }
            Req::Log => {
                let (id, name, reason) = match &self.rec.update {
                    Some(u) => (
                        u.deployment_id.as_str(),
                        u.artifact_name.as_str(),
                        u.reason.as_str(),
                    ),
                    None => ("", "", ""),
                };
                api::deployment_path(&mut self.path, id, "log")?;
                let mut first: String<{ NAME_MAX + 64 }> = String::new();
                let _ = write!(first, "Updraft: installing {name} failed");
                let time = now / 1000;
                let lines = [
                    api::LogLine {
                        level: "info",
                        message: first.as_str(),
                        time,
                    },
                    api::LogLine {
                        level: "error",
                        message: if reason.is_empty() {
                            "unknown error"
                        } else {
                            reason
                        },
                        time,
                    },
                ];
                api::log_body(&mut self.body, lines.into_iter())?;
            }
        }
        Ok(())
    }

    fn send(&mut self, req: Req, now: Millis) -> Action<'_> {
        if self.build(req, now).is_err() {
            // A request we cannot build (an oversized config value): treat
            // it like a failed request, so nothing spins.
            self.request_failed(req, now);
            let until = self
                .wait_until
                .unwrap_or(now.saturating_add(self.cfg.retry));
            return Action::Wait { until };
        }
        self.outstanding = Some(req);
        let (method, bearer, signature) = match req {
            Req::Auth => (
                Method::Post,
                Some(self.cfg.tenant_token),
                Some(self.sig.as_str()),
            ),
            Req::Inventory { patch: false } => (Method::Put, self.token.as_deref(), None),
            Req::Inventory { patch: true } => (Method::Patch, self.token.as_deref(), None),
            Req::Next(Flavour::V1Get) => (Method::Get, self.token.as_deref(), None),
            Req::Next(_) => (Method::Post, self.token.as_deref(), None),
            Req::Report(_) | Req::Substate { .. } | Req::Log => {
                (Method::Put, self.token.as_deref(), None)
            }
        };
        Action::Send(Request {
            method,
            path: self.path.as_str(),
            bearer,
            signature,
            body: &self.body,
        })
    }

    /// A request that needs a token: authenticate first when there is none.
    fn send_authed(&mut self, req: Req, now: Millis) -> Action<'_> {
        if self.token.is_none() {
            self.after_auth = Some(req);
            return self.send(Req::Auth, now);
        }
        self.send(req, now)
    }

    fn next(&mut self, now: Millis) -> Action<'_> {
        if self.boot.is_none() {
            // Nothing happens before Input::Boot.
            return Action::Wait { until: now };
        }
        if let Some(until) = self.wait_until {
            if now < until {
                return Action::Wait { until };
            }
            self.wait_until = None;
        }
        if let Some(req) = self.after_auth {
            if self.token.is_some() || req == Req::Auth {
                self.after_auth = None;
                return self.send(req, now);
            }
            return self.send(Req::Auth, now);
        }
        if self.run.is_some() {
            return self.run_action(now);
        }
        match self.mode {
            Idle::Closing => Action::Persist(&self.rec),
            Idle::Polling => {
                if !self.cfg.server {
                    return Action::Wait { until: Millis::MAX };
                }
                if self.cfg.scripts {
                    let due = self.next_inventory <= now || self.next_poll <= now;
                    let hook = match self.stage {
                        Stage::EnterIdle => Some((Stage::Idle, ScriptState::Idle, When::Enter)),
                        Stage::Idle if due => {
                            Some((Stage::EnterSync, ScriptState::Idle, When::Leave))
                        }
                        Stage::EnterSync => Some((Stage::Syncing, ScriptState::Sync, When::Enter)),
                        Stage::Syncing if !due => {
                            Some((Stage::EnterIdle, ScriptState::Sync, When::Leave))
                        }
                        _ => None,
                    };
                    if let Some((stage, state, when)) = hook {
                        self.stage = stage;
                        self.start_run(Hook { state, when }, After::Poll);
                        return self.run_action(now);
                    }
                }
                if self.next_inventory <= now {
                    self.next_inventory = now.saturating_add(self.cfg.inventory_poll);
                    return self.send_authed(Req::Inventory { patch: false }, now);
                }
                if self.next_poll <= now {
                    self.next_poll = now.saturating_add(self.cfg.update_poll);
                    return self.send_authed(Req::Next(Flavour::V2), now);
                }
                Action::Wait {
                    until: self.next_poll.min(self.next_inventory),
                }
            }
            Idle::Updating => self.update_step(now),
        }
    }

    /// The action of the hook run in progress.
    fn run_action(&mut self, now: Millis) -> Action<'_> {
        let Some(run) = self.run.as_ref() else {
            return Action::Wait { until: now };
        };
        let (hook, index, status) = (run.hook, run.index, run.status);
        match (run.phase, status) {
            (Phase::Find, _) => Action::FindScript { hook, index },
            (Phase::Announce, Some(status)) => self.send_authed(
                Req::Substate {
                    status,
                    start: true,
                },
                now,
            ),
            (Phase::Finish, Some(status)) => self.send_authed(
                Req::Substate {
                    status,
                    start: false,
                },
                now,
            ),
            _ => match self.run.as_ref() {
                Some(run) => Action::RunScript {
                    hook,
                    name: run.name.as_str(),
                },
                None => Action::Wait { until: now },
            },
        }
    }

    fn update_step(&mut self, now: Millis) -> Action<'_> {
        // First settle on the step (skipping what standalone leaves out,
        // and re-verifying if the proof is missing), then build its action.
        let standalone = self.standalone();
        let step = loop {
            let Some(step) = self.current_step() else {
                // Past a reboot step: waiting for Input::Boot.
                return Action::Reboot;
            };
            // The artifact's scripts exist only once it verified: an
            // update that failed in Download runs none (as Mender).
            let verified = self.rec.update.as_ref().is_some_and(|u| u.next.is_some());
            let script_off = match step {
                Step::Script(hook) => {
                    !self.cfg.scripts || (hook.state.from_artifact() && !verified)
                }
                _ => false,
            };
            let skip = (standalone && matches!(step, Step::Report(_) | Step::ReAuth | Step::Log))
                || script_off;
            if skip {
                self.advance();
                if self.mode != Idle::Updating {
                    return self.next(now);
                }
                continue;
            }
            if step == Step::Arm && self.proof.is_none() {
                // No proof in memory (it comes with Download in the same
                // run, so this cannot happen): verify again, never arm blind.
                self.go(UpdateState::Download);
                continue;
            }
            break step;
        };
        match step {
            Step::Persist => Action::Persist(&self.rec),
            Step::Script(hook) => {
                self.start_run(hook, After::Step);
                self.run_action(now)
            }
            Step::Fetch => match self.rec.update.as_ref() {
                None => Action::Wait { until: now },
                Some(u) => Action::Fetch {
                    uri: u.uri.as_str(),
                    resume: self.resume,
                },
            },
            Step::Report(s) => self.send_authed(Req::Report(s), now),
            Step::Log => self.send_authed(Req::Log, now),
            Step::ReAuth => {
                self.token = None;
                self.send(Req::Auth, now)
            }
            Step::Download => match self.rec.update.as_ref() {
                None => Action::Wait { until: now },
                Some(u) => Action::Download {
                    uri: u.uri.as_str(),
                    target: Target {
                        device_type: self.cfg.device_type,
                        installed: &self.rec.installed,
                        payload_type: self.cfg.payload_type,
                        slot: u.to,
                        expect_name: (!u.artifact_name.is_empty())
                            .then_some(u.artifact_name.as_str()),
                    },
                    resume: self.resume,
                },
            },
            Step::Arm => match (&self.proof, &self.rec.update) {
                (Some(proof), Some(u)) => Action::Arm { slot: u.to, proof },
                _ => Action::Wait { until: now },
            },
            Step::Reboot => Action::Reboot,
            Step::Health => Action::CheckHealth,
            Step::Confirm => Action::Confirm,
            Step::RollBack => Action::RollBack,
        }
    }
}

fn push<const N: usize>(s: &mut String<N>, v: &str) -> Result<(), ApiError> {
    s.push_str(v).map_err(|_| ApiError::TooLarge("path"))
}
