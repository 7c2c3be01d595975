//! The WAHA and Evolution API adapters against local servers that answer as those gateways
//! document: answers, privacy, and every error (401, 404, 422, 429, 5xx, timeouts) mapped to
//! the right class.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::common::oracle;
use wacheck_backends::evolution::EvolutionBackend;
use wacheck_backends::waha::WahaBackend;
use wacheck_backends::{
    AccountDown, BackendError, CheckBackend, Contact, GatewaySettings, Presence,
};
use wacheck_core::E164;
use wacheck_testkit::{FakeGateway, Fault, Session, whatsapp_user};

const KEY: &str = "gw-secret-key";

fn settings(gw: &FakeGateway, session: &str, key: &str) -> GatewaySettings {
    GatewaySettings {
        base_url: gw.base_url(),
        session: session.into(),
        api_key: Some(key.into()),
        batch: None,
        timeout_ms: 2_000,
    }
}

/// Numbers the rule puts on WhatsApp and off it, with and without a visible about text.
/// Swiss numbers, and Brazilian mobiles (whose JID comes back without the ninth digit).
fn sample() -> Vec<E164> {
    let swiss = (0..40).map(|i| format!("+4179{:07}", 1_000_000 + i * 7919));
    let brazil = (0..10).map(|i| format!("+55119{:08}", 80_000_000 + i * 104_729));
    swiss
        .chain(brazil)
        .map(|n| E164::from_canonical(&n).unwrap())
        .collect()
}

fn account_down(r: Result<impl std::fmt::Debug, BackendError>) -> AccountDown {
    match r {
        Err(BackendError::Account { down, .. }) => down,
        other => panic!("expected an account error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waha_answers_checks_and_details_as_documented() {
    let gw = FakeGateway::waha(KEY, "default", 70, 30);
    let b = WahaBackend::new(settings(&gw, "default", KEY)).unwrap();
    assert_eq!(b.max_batch(), 1, "WAHA checks one number per call");
    let numbers = sample();
    let (mut yes, mut hidden, mut shortened) = (0, 0, 0);
    for n in &numbers {
        let r = b.check(std::slice::from_ref(n)).await.unwrap();
        let want = oracle::simulated(n.as_str(), 70, 30);
        match &r[0].presence {
            Presence::Yes { jid, lid, business } => {
                assert!(want.registered, "{n} is not on WhatsApp by the rule");
                assert_eq!(
                    jid,
                    &format!("{}@c.us", whatsapp_user(n.digits())),
                    "the server's chat id is kept"
                );
                shortened += usize::from(!jid.starts_with(n.digits()));
                assert_eq!((lid, business), (&None, &None), "WAHA tells neither");
                yes += 1;
                let contact = Contact {
                    number: n.clone(),
                    jid: Some(jid.clone()),
                };
                let d = b.details(&[contact]).await.unwrap();
                assert_eq!(d[0].about_hidden, want.about_hidden, "{n}");
                if want.about_hidden {
                    hidden += 1;
                    assert_eq!(d[0].about, None);
                } else {
                    assert_eq!(d[0].about.as_deref(), Some(want.signature));
                }
                assert_eq!(d[0].about_set_at, None, "WAHA gives no date");
                assert_eq!(d[0].has_picture, Some(want.picture));
            }
            Presence::No => assert!(!want.registered, "{n} is on WhatsApp by the rule"),
            other => panic!("{other:?}"),
        }
    }
    assert!(
        yes > 10 && hidden > 0 && shortened > 0,
        "the sample covers every case ({yes} yes, {hidden} hidden, {shortened} other JIDs)"
    );
    assert_eq!(
        gw.state.numbers_checked.load(Ordering::Relaxed),
        numbers.len() as u64
    );
    assert!(b.probe().await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waha_errors_are_classified() {
    let gw = FakeGateway::waha(KEY, "default", 70, 0);
    let n = sample()[..1].to_vec();
    let wrong_key = WahaBackend::new(settings(&gw, "default", "nope")).unwrap();
    assert_eq!(account_down(wrong_key.check(&n).await), AccountDown::Failed);
    let unknown_session = WahaBackend::new(settings(&gw, "other", KEY)).unwrap();
    assert_eq!(
        account_down(unknown_session.check(&n).await),
        AccountDown::LoggedOut
    );
    assert_eq!(
        account_down(unknown_session.probe().await),
        AccountDown::LoggedOut
    );

    let b = WahaBackend::new(settings(&gw, "default", KEY)).unwrap();
    gw.state.fail_next(Fault::RateLimited, 1);
    assert!(matches!(
        b.check(&n).await,
        Err(BackendError::RateLimited { backoff: None })
    ));
    gw.state.fail_next(Fault::ServerError, 1);
    assert!(matches!(b.check(&n).await, Err(BackendError::Transient(_))));
    gw.state.fail_next(Fault::Slow(Duration::from_secs(3)), 1);
    let slow = b.check(&n).await;
    assert!(
        matches!(&slow, Err(BackendError::Transient(m)) if m.contains("in time")),
        "{slow:?}"
    );

    gw.state.set_session(Session::ScanQr);
    assert_eq!(account_down(b.check(&n).await), AccountDown::Pairing);
    assert_eq!(account_down(b.probe().await), AccountDown::Pairing);
    gw.state.set_session(Session::Stopped);
    assert_eq!(account_down(b.check(&n).await), AccountDown::LoggedOut);
    assert_eq!(account_down(b.probe().await), AccountDown::LoggedOut);
    gw.state.set_session(Session::Working);
    assert!(b.probe().await.is_ok());
    assert_eq!(b.check(&n).await.unwrap().len(), 1, "works again");

    // Nothing listens: a transient error, never an answer.
    drop(gw);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let gone = WahaBackend::new(GatewaySettings {
        base_url: format!("http://127.0.0.1:{}", free_port()),
        ..settings_for_nothing()
    })
    .unwrap();
    assert!(matches!(
        gone.check(&n).await,
        Err(BackendError::Transient(_))
    ));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn settings_for_nothing() -> GatewaySettings {
    GatewaySettings {
        base_url: String::new(),
        session: "default".into(),
        api_key: Some(KEY.into()),
        batch: None,
        timeout_ms: 2_000,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evolution_answers_many_numbers_per_call_and_profiles() {
    let gw = FakeGateway::evolution(KEY, "main", 70, 30);
    let mut s = settings(&gw, "main", KEY);
    s.batch = Some(25);
    let b = EvolutionBackend::new(s).unwrap();
    assert_eq!(b.max_batch(), 25);
    let numbers = sample();
    let mut r = b.check(&numbers[..25]).await.unwrap();
    r.extend(b.check(&numbers[25..]).await.unwrap());
    assert_eq!(
        gw.state.check_calls.load(Ordering::Relaxed),
        2,
        "25 numbers per call"
    );
    let mut yes = Vec::new();
    let mut shortened = 0;
    for (n, r) in numbers.iter().zip(&r) {
        assert_eq!(&r.number, n);
        let want = oracle::simulated(n.as_str(), 70, 30);
        match &r.presence {
            Presence::Yes { jid, .. } => {
                assert!(want.registered);
                assert_eq!(
                    jid,
                    &format!("{}@s.whatsapp.net", whatsapp_user(n.digits()))
                );
                shortened += usize::from(!jid.starts_with(n.digits()));
                yes.push(Contact {
                    number: n.clone(),
                    jid: Some(jid.clone()),
                });
            }
            Presence::No => assert!(!want.registered),
            other => panic!("{other:?}"),
        }
    }
    assert!(shortened > 0, "the server's JIDs are kept");
    let details = b.details(&yes).await.unwrap();
    let mut hidden = 0;
    for (Contact { number: n, .. }, d) in yes.iter().zip(&details) {
        let want = oracle::simulated(n.as_str(), 70, 30);
        assert_eq!(d.about_hidden, want.about_hidden, "{n}");
        if want.about_hidden {
            hidden += 1;
            assert_eq!((d.about.as_deref(), d.about_set_at), (None, None));
        } else {
            assert_eq!(d.about.as_deref(), Some(want.signature));
            assert_eq!(
                d.about_set_at.map(|d| d.format("%Y-%m-%d").to_string()),
                Some(want.status_update)
            );
        }
        assert_eq!(d.business, Some(want.business));
        assert_eq!(d.has_picture, Some(want.picture));
    }
    assert!(hidden > 0 && hidden < yes.len());
    // The server knows a renamed contact only by its JID: asked by the number's own digits,
    // it has no profile to give.
    let renamed = yes
        .iter()
        .find(|c| {
            let visible = !oracle::simulated(c.number.as_str(), 70, 30).about_hidden;
            visible && !c.jid.as_deref().unwrap().starts_with(c.number.digits())
        })
        .expect("the sample has a renamed contact with a visible about text");
    let by_digits = b
        .details(&[Contact::from(renamed.number.clone())])
        .await
        .unwrap();
    assert_eq!(by_digits[0].about, None, "asked by its digits");
    let by_jid = b.details(std::slice::from_ref(renamed)).await.unwrap();
    assert!(by_jid[0].about.is_some(), "asked by its JID");
    // A number that left WhatsApp since its check: the profile says nothing, no error.
    let no = numbers
        .iter()
        .find(|n| !oracle::simulated(n.as_str(), 70, 30).registered)
        .unwrap();
    let d = b.details(&[Contact::from(no.clone())]).await.unwrap();
    assert_eq!((d[0].about.clone(), d[0].business), (None, None));
    assert!(b.probe().await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evolution_errors_are_classified() {
    let gw = FakeGateway::evolution(KEY, "main", 70, 0);
    let n = sample()[..3].to_vec();
    let wrong_key = EvolutionBackend::new(settings(&gw, "main", "nope")).unwrap();
    assert_eq!(account_down(wrong_key.check(&n).await), AccountDown::Failed);
    let unknown = EvolutionBackend::new(settings(&gw, "other", KEY)).unwrap();
    let e = unknown.check(&n).await;
    assert!(
        matches!(&e, Err(BackendError::Account { down: AccountDown::Failed, reason }) if reason.contains("does not exist")),
        "{e:?}"
    );
    let b = EvolutionBackend::new(settings(&gw, "main", KEY)).unwrap();
    gw.state.fail_next(Fault::RateLimited, 1);
    assert_eq!(
        b.check(&n).await.err(),
        Some(BackendError::RateLimited {
            backoff: Some(Duration::from_secs(1))
        }),
        "429 with Retry-After"
    );
    gw.state.fail_next(Fault::ServerError, 1);
    assert!(matches!(b.check(&n).await, Err(BackendError::Transient(_))));
    gw.state.fail_next(Fault::Slow(Duration::from_secs(3)), 1);
    assert!(matches!(b.check(&n).await, Err(BackendError::Transient(_))));
    gw.state.set_session(Session::Stopped);
    assert_eq!(
        account_down(b.check(&n).await),
        AccountDown::LoggedOut,
        "Connection Closed"
    );
    let contacts: Vec<Contact> = n.iter().cloned().map(Contact::from).collect();
    assert_eq!(
        account_down(b.details(&contacts).await),
        AccountDown::LoggedOut
    );
    assert_eq!(
        account_down(b.probe().await),
        AccountDown::LoggedOut,
        "state close"
    );
    gw.state.set_session(Session::ScanQr);
    assert_eq!(
        account_down(b.probe().await),
        AccountDown::Pairing,
        "state connecting"
    );
    gw.state.set_session(Session::Working);
    assert_eq!(b.check(&n).await.unwrap().len(), 3);
    // An empty request is the caller's mistake: permanent, with the server's words.
    let e = b.check(&[]).await;
    assert!(
        matches!(&e, Err(BackendError::Permanent(m)) if m.contains("minimum length")),
        "{e:?}"
    );
}
