//! The agent's device-API behaviour, input by input: the request it sends
//! for each answer the server gives (spec 2: re-auth once on 401, `next`
//! falling back v2 -> v1 POST -> v1 GET on 404, `already-installed`, 409 =
//! aborted, retries with backoff, the forced re-auth before commit), and
//! the standalone mode that sends nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use updraft_core::api::{self, Method};
use updraft_core::boot::{BootState, Slot, Trial};
use updraft_core::crypto::SigningKey;
use updraft_core::machine::{Action, Agent, Config, Input};
use updraft_core::store::{Installed, StateRecord, UpdateState};

const T0: u64 = 1_795_000_000_000;

fn cfg(server: bool) -> Config<'static> {
    Config {
        device_type: "sim-board",
        id_data: "{\"mac\":\"52:54:00:00:00:01\"}",
        public_key_pem: "-----BEGIN PUBLIC KEY-----\nX\n-----END PUBLIC KEY-----\n",
        tenant_token: "",
        payload_type: "rootfs-image",
        inventory: &[("hostname", "sim")],
        update_poll: 5_000,
        inventory_poll: 60_000,
        retry: 1_000,
        max_retry: 8_000,
        max_attempts: 3,
        server,
        scripts: false,
        script_retry_interval: 1_000,
        script_retry_timeout: 5_000,
    }
}

fn installed() -> Installed {
    let mut i = Installed::default();
    i.artifact_name.push_str("release-1").unwrap();
    i
}

fn key() -> SigningKey {
    SigningKey::p256_from_bytes(&[7u8; 32]).unwrap()
}

fn idle_boot() -> Input<'static> {
    Input::Boot {
        boot: BootState {
            active: Slot::A,
            trial: Trial::None,
        },
        image: None,
    }
}

/// (method, path, body) of a Send; panics on anything else.
fn sent(a: &Action<'_>) -> (Method, String, String) {
    match a {
        Action::Send(r) => (
            r.method,
            r.path.to_string(),
            String::from_utf8_lossy(r.body).into_owned(),
        ),
        other => panic!("expected a request, got {other:?}"),
    }
}

fn resp(status: u16, body: &[u8]) -> Input<'_> {
    Input::Response { status, body }
}

const OFFER: &[u8] = br#"{"id":"d1","artifact":{"artifact_name":"release-2","source":{"uri":"https://s/a.mender"},"device_types_compatible":["sim-board"]}}"#;

#[test]
fn auth_first_then_inventory_then_next() {
    let k = key();
    let mut a = Agent::new(cfg(true), &k, None, installed());
    let act = a.handle(idle_boot(), T0);
    let (m, path, body) = sent(&act);
    assert_eq!((m, path.as_str()), (Method::Post, api::AUTH_PATH));
    assert!(body.starts_with("{\"id_data\":"), "{body}");
    match act {
        Action::Send(r) => {
            assert_eq!(r.bearer, Some(""), "tenant token (empty) as bearer");
            assert!(r.signature.is_some());
        }
        _ => unreachable!(),
    }
    // Pending: 401, retried after the retry interval, nothing else sent.
    let act = a.handle(resp(401, b""), T0);
    let Action::Wait { until } = act else {
        panic!("{act:?}")
    };
    assert_eq!(until, T0 + 1_000);
    let act = a.handle(Input::Timer, until);
    assert_eq!(sent(&act).1, api::AUTH_PATH);
    let act = a.handle(resp(200, b"jwt-1"), until);
    let (m, path, body) = sent(&act);
    assert_eq!((m, path.as_str()), (Method::Put, api::INVENTORY_PATH));
    assert_eq!(
        body,
        "[{\"name\":\"device_type\",\"value\":\"sim-board\"},{\"name\":\"artifact_name\",\"value\":\"release-1\"},{\"name\":\"hostname\",\"value\":\"sim\"}]\n"
    );
    match &act {
        Action::Send(r) => assert_eq!(r.bearer, Some("jwt-1")),
        _ => unreachable!(),
    }
    let act = a.handle(resp(200, b""), until);
    assert_eq!(sent(&act).1, api::NEXT_V2_PATH);
    let act = a.handle(resp(204, b""), until);
    assert!(
        matches!(act, Action::Wait { until: u } if u == until + 5_000),
        "{act:?}"
    );
}

#[test]
fn a_401_re_authenticates_once_and_retries_the_same_request() {
    let k = key();
    let mut a = Agent::new(cfg(true), &k, None, installed());
    a.handle(idle_boot(), T0);
    a.handle(resp(200, b"jwt-1"), T0); // -> inventory
    a.handle(resp(200, b""), T0); // -> next
    let act = a.handle(resp(401, b""), T0);
    assert_eq!(sent(&act).1, api::AUTH_PATH, "re-auth after 401");
    let act = a.handle(resp(200, b"jwt-2"), T0);
    let (_, path, _) = sent(&act);
    assert_eq!(path, api::NEXT_V2_PATH, "the same request again");
    match &act {
        Action::Send(r) => assert_eq!(r.bearer, Some("jwt-2")),
        _ => unreachable!(),
    }
    // A second 401 right after the re-auth is an error for this poll, not
    // an endless auth loop.
    let act = a.handle(resp(401, b""), T0);
    assert!(matches!(act, Action::Wait { .. }), "{act:?}");
}

#[test]
fn next_falls_back_to_v1_post_then_v1_get_on_404() {
    let k = key();
    let mut a = Agent::new(cfg(true), &k, None, installed());
    a.handle(idle_boot(), T0);
    a.handle(resp(200, b"jwt"), T0);
    let act = a.handle(resp(200, b""), T0);
    assert_eq!(sent(&act).1, api::NEXT_V2_PATH);
    let act = a.handle(resp(404, b""), T0);
    let (m, path, body) = sent(&act);
    assert_eq!((m, path.as_str()), (Method::Post, api::NEXT_V1_PATH));
    assert_eq!(
        body,
        "{\"artifact_name\":\"release-1\",\"device_type\":\"sim-board\"}"
    );
    let act = a.handle(resp(404, b""), T0);
    let (m, path, body) = sent(&act);
    assert_eq!(m, Method::Get);
    assert_eq!(
        path,
        format!(
            "{}?artifact_name=release-1&device_type=sim-board",
            api::NEXT_V1_PATH
        )
    );
    assert!(body.is_empty());
    let act = a.handle(resp(204, b""), T0);
    assert!(matches!(act, Action::Wait { .. }));
}

#[test]
fn the_installed_artifact_is_reported_already_installed_and_not_downloaded() {
    let k = key();
    let mut a = Agent::new(cfg(true), &k, None, installed());
    a.handle(idle_boot(), T0);
    a.handle(resp(200, b"jwt"), T0);
    a.handle(resp(200, b""), T0);
    let same = br#"{"id":"d9","artifact":{"artifact_name":"release-1","source":{"uri":"u"},"device_types_compatible":["sim-board"]}}"#;
    let act = a.handle(resp(200, same), T0);
    let (m, path, body) = sent(&act);
    assert_eq!(m, Method::Put);
    assert_eq!(path, format!("{}d9/status", api::DEPLOYMENT_PREFIX));
    assert_eq!(body, "{\"status\":\"already-installed\"}\n");
    let act = a.handle(resp(204, b""), T0);
    assert!(matches!(act, Action::Wait { .. }), "{act:?}");
    assert!(a.is_idle());
    assert!(a.record().update.is_none());
}

/// Drives an agent from boot to the download of OFFER.
fn to_download(a: &mut Agent<'_, SigningKey>) {
    a.handle(idle_boot(), T0);
    a.handle(resp(200, b"jwt"), T0);
    a.handle(resp(200, b""), T0);
    let act = a.handle(resp(200, OFFER), T0);
    let Action::Persist(rec) = act else {
        panic!("{act:?}")
    };
    let u = rec.update.as_ref().unwrap();
    assert_eq!(u.state, UpdateState::Download);
    assert_eq!((u.from, u.to), (Slot::A, Slot::B));
    assert_eq!(u.deployment_id.as_str(), "d1");
    let act = a.handle(Input::Done, T0);
    assert_eq!(sent(&act).2, "{\"status\":\"downloading\"}\n");
    // Open the artifact, report that it answered, then stream it.
    let act = a.handle(resp(204, b""), T0);
    assert!(
        matches!(
            act,
            Action::Fetch {
                uri: "https://s/a.mender",
                resume: false
            }
        ),
        "{act:?}"
    );
    let act = a.handle(Input::Done, T0);
    assert_eq!(sent(&act).2, "{\"status\":\"downloading\"}\n");
    let act = a.handle(resp(204, b""), T0);
    match act {
        Action::Download {
            uri,
            target,
            resume,
        } => {
            assert_eq!(uri, "https://s/a.mender");
            assert_eq!(target.slot, Slot::B);
            assert_eq!(target.expect_name, Some("release-2"));
            assert!(!resume);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn download_errors_back_off_and_resume_then_fail_after_the_attempts() {
    let k = key();
    let mut a = Agent::new(cfg(true), &k, None, installed());
    to_download(&mut a);
    let act = a.handle(
        Input::DownloadFailed {
            reason: "connection reset",
            retry: true,
        },
        T0,
    );
    let Action::Wait { until } = act else {
        panic!("{act:?}")
    };
    assert_eq!(until, T0 + 1_000);
    let act = a.handle(Input::Timer, until);
    assert!(matches!(act, Action::Fetch { resume: true, .. }), "{act:?}");
    let act = a.handle(Input::Done, until);
    assert_eq!(sent(&act).2, "{\"status\":\"downloading\"}\n");
    let act = a.handle(resp(204, b""), until);
    assert!(
        matches!(act, Action::Download { resume: true, .. }),
        "{act:?}"
    );
    let act = a.handle(
        Input::DownloadFailed {
            reason: "502",
            retry: true,
        },
        until,
    );
    let Action::Wait { until: u2 } = act else {
        panic!("{act:?}")
    };
    assert_eq!(u2, until + 2_000, "the delay doubles");
    // Fails again at opening it.
    let act = a.handle(Input::Timer, u2);
    assert!(matches!(act, Action::Fetch { resume: true, .. }), "{act:?}");
    // Third failure: out of attempts -> ArtifactFailure, reported.
    let act = a.handle(
        Input::DownloadFailed {
            reason: "502",
            retry: true,
        },
        u2,
    );
    let Action::Persist(rec) = act else {
        panic!("{act:?}")
    };
    let u = rec.update.as_ref().unwrap();
    assert_eq!(u.state, UpdateState::ArtifactFailure);
    assert_eq!(u.reason.as_str(), "502");
    let act = a.handle(Input::Done, u2);
    assert_eq!(sent(&act).2, "{\"status\":\"failure\"}\n");
    let act = a.handle(resp(204, b""), u2);
    let (_, path, body) = sent(&act);
    assert_eq!(path, format!("{}d1/log", api::DEPLOYMENT_PREFIX));
    assert!(
        body.contains("\"level\":\"error\",\"message\":\"502\""),
        "{body}"
    );
    let act = a.handle(resp(204, b""), u2);
    let Action::Persist(rec) = act else {
        panic!("{act:?}")
    };
    assert!(rec.update.is_none());
    assert_eq!(rec.installed.artifact_name.as_str(), "release-1");
}

#[test]
fn an_invalid_artifact_fails_at_once() {
    let k = key();
    let mut a = Agent::new(cfg(true), &k, None, installed());
    to_download(&mut a);
    let act = a.handle(
        Input::DownloadFailed {
            reason: "invalid artifact: digest mismatch",
            retry: false,
        },
        T0,
    );
    let Action::Persist(rec) = act else {
        panic!("{act:?}")
    };
    assert_eq!(
        rec.update.as_ref().unwrap().state,
        UpdateState::ArtifactFailure
    );
}

#[test]
fn a_409_aborts_before_arming() {
    let k = key();
    let mut a = Agent::new(cfg(true), &k, None, installed());
    a.handle(idle_boot(), T0);
    a.handle(resp(200, b"jwt"), T0);
    a.handle(resp(200, b""), T0);
    a.handle(resp(200, OFFER), T0);
    a.handle(Input::Done, T0); // persisted -> downloading report
    let act = a.handle(resp(409, b""), T0);
    let Action::Persist(rec) = act else {
        panic!("{act:?}")
    };
    let u = rec.update.as_ref().unwrap();
    assert_eq!(u.state, UpdateState::ArtifactFailure);
    assert!(u.reason.contains("aborted"), "{}", u.reason);
}

#[test]
fn after_the_reboot_the_commit_re_authenticates_and_a_409_rolls_back() {
    // A record as persisted before the reboot into the new slot.
    let k = key();
    let mut a = Agent::new(cfg(true), &k, None, installed());
    to_download(&mut a);
    let mut rec: StateRecord = a.record().clone();
    let u = rec.update.as_mut().unwrap();
    u.state = UpdateState::ArtifactReboot;
    let mut a = Agent::new(cfg(true), &k, Some(rec), installed());
    let act = a.handle(
        Input::Boot {
            boot: BootState {
                active: Slot::B,
                trial: Trial::Running { boot_count: 1 },
            },
            image: None,
        },
        T0,
    );
    let Action::Persist(rec) = act else {
        panic!("{act:?}")
    };
    assert_eq!(
        rec.update.as_ref().unwrap().state,
        UpdateState::ArtifactVerifyReboot
    );
    assert!(matches!(a.handle(Input::Done, T0), Action::CheckHealth));
    let act = a.handle(Input::Done, T0);
    let Action::Persist(rec) = act else {
        panic!("{act:?}")
    };
    assert_eq!(
        rec.update.as_ref().unwrap().state,
        UpdateState::ArtifactCommit
    );
    let act = a.handle(Input::Done, T0);
    assert_eq!(sent(&act).1, api::AUTH_PATH, "forced re-auth before commit");
    let act = a.handle(resp(200, b"jwt-new"), T0);
    assert_eq!(sent(&act).2, "{\"status\":\"installing\"}\n");
    // Aborted on the server while on trial: roll back, never confirm.
    let act = a.handle(resp(409, b""), T0);
    let Action::Persist(rec) = act else {
        panic!("{act:?}")
    };
    assert_eq!(
        rec.update.as_ref().unwrap().state,
        UpdateState::ArtifactRollback
    );
    assert!(matches!(a.handle(Input::Done, T0), Action::RollBack));
    let act = a.handle(Input::Done, T0);
    let Action::Persist(rec) = act else {
        panic!("{act:?}")
    };
    assert_eq!(
        rec.update.as_ref().unwrap().state,
        UpdateState::ArtifactRollbackReboot
    );
    assert!(matches!(a.handle(Input::Done, T0), Action::Reboot));
}

#[test]
fn standalone_install_sends_nothing() {
    let k = key();
    let mut a = Agent::new(cfg(false), &k, None, installed());
    let act = a.handle(idle_boot(), T0);
    assert!(matches!(act, Action::Wait { until: u64::MAX }), "{act:?}");
    let act = a.handle(
        Input::InstallLocal {
            path: "/data/release-2.mender",
        },
        T0,
    );
    assert!(matches!(act, Action::Persist(_)), "{act:?}");
    let act = a.handle(Input::Done, T0);
    assert!(
        matches!(
            act,
            Action::Fetch {
                uri: "/data/release-2.mender",
                ..
            }
        ),
        "expected the artifact opened without a report: {act:?}"
    );
    let act = a.handle(Input::Done, T0);
    match act {
        Action::Download { uri, target, .. } => {
            assert_eq!(uri, "/data/release-2.mender");
            assert_eq!(target.expect_name, None);
        }
        other => panic!("expected the download without a report: {other:?}"),
    }
}

/// The hook a FindScript asks about, as `State_When`, and its index.
fn find(a: &Action<'_>) -> (String, u8) {
    match a {
        Action::FindScript { hook, index } => (hook.to_string(), *index),
        other => panic!("expected a script lookup, got {other:?}"),
    }
}

#[test]
fn idle_and_sync_scripts_wrap_every_poll() {
    let k = key();
    let mut c = cfg(true);
    c.scripts = true;
    let mut a = Agent::new(c, &k, None, installed());
    let none = || Input::Script { name: None };
    let act = a.handle(idle_boot(), T0);
    assert_eq!(find(&act), ("Idle_Enter".into(), 0));
    let act = a.handle(none(), T0);
    assert_eq!(find(&act), ("Idle_Leave".into(), 0), "a poll is due");
    let act = a.handle(none(), T0);
    assert_eq!(find(&act), ("Sync_Enter".into(), 0));
    // One Sync_Enter script: it runs (a failure is ignored in Sync).
    let act = a.handle(
        Input::Script {
            name: Some("Sync_Enter_00_net"),
        },
        T0,
    );
    assert!(
        matches!(
            act,
            Action::RunScript {
                name: "Sync_Enter_00_net",
                ..
            }
        ),
        "{act:?}"
    );
    let act = a.handle(Input::Failed("no network"), T0);
    assert_eq!(find(&act), ("Sync_Enter".into(), 1));
    let act = a.handle(none(), T0);
    assert_eq!(sent(&act).1, api::AUTH_PATH);
    let act = a.handle(resp(200, b"jwt"), T0);
    assert_eq!(sent(&act).1, api::INVENTORY_PATH);
    let act = a.handle(resp(200, b""), T0);
    assert_eq!(sent(&act).1, api::NEXT_V2_PATH);
    let act = a.handle(resp(204, b""), T0);
    assert_eq!(find(&act), ("Sync_Leave".into(), 0), "nothing more is due");
    let act = a.handle(none(), T0);
    assert_eq!(find(&act), ("Idle_Enter".into(), 0));
    let act = a.handle(none(), T0);
    assert!(
        matches!(act, Action::Wait { until } if until == T0 + 5_000),
        "{act:?}"
    );
    // The next poll: Idle_Leave, Sync_Enter, then the update check.
    let act = a.handle(Input::Timer, T0 + 5_000);
    assert_eq!(find(&act), ("Idle_Leave".into(), 0));
}

#[test]
fn a_script_asking_to_retry_later_runs_again_until_the_timeout_then_fails_the_update() {
    let k = key();
    let mut c = cfg(true);
    c.scripts = true;
    let mut a = Agent::new(c, &k, None, installed());
    let none = || Input::Script { name: None };
    a.handle(idle_boot(), T0); // Idle_Enter
    a.handle(none(), T0); // Idle_Leave
    a.handle(none(), T0); // Sync_Enter
    a.handle(none(), T0); // auth
    a.handle(resp(200, b"jwt"), T0); // inventory
    a.handle(resp(200, b""), T0); // next
    let act = a.handle(resp(200, OFFER), T0);
    assert_eq!(find(&act), ("Sync_Leave".into(), 0), "Sync ends first");
    let act = a.handle(none(), T0);
    assert!(matches!(act, Action::Persist(_)), "{act:?}");
    let act = a.handle(Input::Done, T0);
    assert_eq!(find(&act), ("Download_Enter".into(), 0));
    let act = a.handle(
        Input::Script {
            name: Some("Download_Enter_10_ask-user"),
        },
        T0,
    );
    assert!(matches!(act, Action::RunScript { .. }), "{act:?}");
    // "Retry later": the same script again after the interval (1 s here),
    // until the timeout (5 s) has passed.
    let mut t = T0;
    let mut runs = 1;
    let act = loop {
        let act = a.handle(Input::RetryLater, t);
        match act {
            Action::Wait { until } => {
                assert_eq!(until, t + 1_000);
                t = until;
                let act = a.handle(Input::Timer, t);
                assert!(
                    matches!(
                        act,
                        Action::RunScript {
                            name: "Download_Enter_10_ask-user",
                            ..
                        }
                    ),
                    "{act:?}"
                );
                runs += 1;
            }
            other => break other,
        }
    };
    assert_eq!(runs, 6, "runs at 0, 1, .. 5 s");
    // Then it counts as failed: Download_Error scripts, then the failure.
    assert_eq!(find(&act), ("Download_Error".into(), 0));
    let act = a.handle(none(), t);
    let Action::Persist(rec) = act else {
        panic!("{act:?}")
    };
    let u = rec.update.as_ref().unwrap();
    assert_eq!(u.state, UpdateState::ArtifactFailure);
    assert!(
        u.reason.contains("Download_Enter_10_ask-user") && u.reason.contains("retry later"),
        "{}",
        u.reason
    );
}

#[test]
fn a_409_to_a_substate_report_aborts_the_update() {
    let k = key();
    let mut c = cfg(true);
    c.scripts = true;
    // A record as persisted before the reboot into the new slot.
    let mut a = Agent::new(cfg(true), &k, None, installed());
    to_download(&mut a);
    let mut rec: StateRecord = a.record().clone();
    let u = rec.update.as_mut().unwrap();
    u.state = UpdateState::ArtifactReboot;
    let mut next = installed();
    next.artifact_name.clear();
    next.artifact_name.push_str("release-2").unwrap();
    u.next = Some(next);
    let mut a = Agent::new(c, &k, Some(rec), installed());
    let none = || Input::Script { name: None };
    let act = a.handle(
        Input::Boot {
            boot: BootState {
                active: Slot::B,
                trial: Trial::Running { boot_count: 1 },
            },
            image: None,
        },
        T0,
    );
    assert!(matches!(act, Action::Persist(_)), "{act:?}");
    let act = a.handle(Input::Done, T0);
    assert_eq!(
        find(&act),
        ("ArtifactReboot_Leave".into(), 0),
        "after the reboot"
    );
    let act = a.handle(none(), T0);
    assert!(matches!(act, Action::CheckHealth), "{act:?}");
    a.handle(Input::Done, T0); // persist ArtifactCommit
    let act = a.handle(Input::Done, T0);
    assert_eq!(find(&act), ("ArtifactCommit_Enter".into(), 0));
    let act = a.handle(
        Input::Script {
            name: Some("ArtifactCommit_Enter_05_note"),
        },
        T0,
    );
    assert_eq!(sent(&act).1, api::AUTH_PATH, "no token since the boot");
    let act = a.handle(resp(200, b"jwt"), T0);
    assert_eq!(
        sent(&act).2,
        "{\"status\":\"rebooting\",\"substate\":\"Executing script: ArtifactCommit_Enter_05_note\"}\n"
    );
    // Aborted on the server: the script never runs, nothing is confirmed;
    // ArtifactCommit's Error scripts, then the rollback.
    let act = a.handle(resp(409, b""), T0);
    assert_eq!(find(&act), ("ArtifactCommit_Error".into(), 0));
    let act = a.handle(none(), T0);
    let Action::Persist(rec) = act else {
        panic!("{act:?}")
    };
    let u = rec.update.as_ref().unwrap();
    assert_eq!(u.state, UpdateState::ArtifactRollback);
    assert!(u.reason.contains("aborted"), "{}", u.reason);
}
