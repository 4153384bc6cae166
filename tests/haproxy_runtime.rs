//! The HAProxy runtime API client against a real HAProxy: servers added, drained, waited on,
//! moved and removed while requests go through the frontend to tiny HTTP servers on loopback.

#[path = "support/haproxy.rs"]
mod haproxy_support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use haproxy_support::{
    BACKEND, KeepAliveClient, STATIC_BACKEND, TestBackend, TestHaproxy, free_loopback_port, get,
    haproxy_or_skip, try_get,
};
use pilothouse::lb::haproxy::{Admin, Haproxy, LbError, ServerState};

fn client(haproxy: &TestHaproxy) -> Haproxy {
    Haproxy::new(&haproxy.socket().display().to_string()).expect("a socket path is an address")
}

/// The bodies of `count` requests through the frontend, all of which must be answered 200.
async fn bodies(frontend: SocketAddr, count: usize) -> Vec<String> {
    let mut bodies = Vec::new();
    for _ in 0..count {
        let answer = get(frontend).await;
        assert_eq!(
            answer.status, 200,
            "a request through the frontend failed: {answer:?}"
        );
        bodies.push(answer.body);
    }
    bodies
}

fn distinct(bodies: &[String]) -> BTreeSet<&str> {
    bodies.iter().map(String::as_str).collect()
}

fn find<'a>(servers: &'a [ServerState], name: &str) -> Option<&'a ServerState> {
    servers.iter().find(|s| s.name == name)
}

#[tokio::test]
async fn two_added_servers_both_take_requests_and_are_listed_ready_and_up() {
    let Some(haproxy) = haproxy_or_skip().await else {
        return;
    };
    let lb = client(&haproxy);
    let (a, b) = (
        TestBackend::start("web-a").await,
        TestBackend::start("web-b").await,
    );

    lb.add_server(BACKEND, "web-a", a.address()).await.unwrap();
    lb.add_server(BACKEND, "web-b", b.address()).await.unwrap();

    let seen = bodies(haproxy.frontend(), 6).await;
    assert_eq!(distinct(&seen), BTreeSet::from(["web-a", "web-b"]));
    let servers = lb.servers(BACKEND).await.unwrap();
    let listed: Vec<(&str, String, u16, Admin, bool, u64)> = servers
        .iter()
        .map(|s| {
            (
                s.name.as_str(),
                s.address.clone(),
                s.port,
                s.admin,
                s.up,
                s.sessions,
            )
        })
        .collect();
    assert_eq!(
        listed,
        vec![
            (
                "web-a",
                "127.0.0.1".to_string(),
                a.address().port(),
                Admin::Ready,
                true,
                0
            ),
            (
                "web-b",
                "127.0.0.1".to_string(),
                b.address().port(),
                Admin::Ready,
                true,
                0
            ),
        ]
    );
}

#[tokio::test]
async fn a_drained_server_takes_no_new_requests_and_is_removed_once_idle() {
    let Some(haproxy) = haproxy_or_skip().await else {
        return;
    };
    let lb = client(&haproxy);
    let (a, b) = (
        TestBackend::start("web-a").await,
        TestBackend::start("web-b").await,
    );
    lb.add_server(BACKEND, "web-a", a.address()).await.unwrap();
    lb.add_server(BACKEND, "web-b", b.address()).await.unwrap();
    assert_eq!(distinct(&bodies(haproxy.frontend(), 4).await).len(), 2);

    lb.drain(BACKEND, "web-a").await.unwrap();
    let servers = lb.servers(BACKEND).await.unwrap();
    assert_eq!(find(&servers, "web-a").map(|s| s.admin), Some(Admin::Drain));
    let answered_by_a = a.answered();
    let seen = bodies(haproxy.frontend(), 6).await;
    assert_eq!(distinct(&seen), BTreeSet::from(["web-b"]));
    assert_eq!(
        a.answered(),
        answered_by_a,
        "a drained server was sent a request"
    );

    assert!(
        lb.wait_idle(BACKEND, "web-a", Duration::from_secs(5))
            .await
            .unwrap()
    );
    lb.remove_server(BACKEND, "web-a").await.unwrap();
    let names: Vec<String> = lb
        .servers(BACKEND)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, vec!["web-b"]);
    lb.remove_server(BACKEND, "web-a")
        .await
        .expect("removing a removed server is Ok");
    assert_eq!(
        distinct(&bodies(haproxy.frontend(), 3).await),
        BTreeSet::from(["web-b"])
    );
}

#[tokio::test]
async fn a_server_that_does_not_exist_is_idle_and_removing_it_is_ok() {
    let Some(haproxy) = haproxy_or_skip().await else {
        return;
    };
    let lb = client(&haproxy);
    assert!(
        lb.wait_idle(BACKEND, "never-added", Duration::from_millis(100))
            .await
            .unwrap()
    );
    lb.remove_server(BACKEND, "never-added").await.unwrap();
    assert_eq!(lb.servers(BACKEND).await.unwrap(), vec![]);
}

#[tokio::test]
async fn adding_a_server_again_at_another_address_moves_it() {
    let Some(haproxy) = haproxy_or_skip().await else {
        return;
    };
    let lb = client(&haproxy);
    let (old, new) = (
        TestBackend::start("old").await,
        TestBackend::start("new").await,
    );
    lb.add_server(BACKEND, "web-1", old.address())
        .await
        .unwrap();
    assert_eq!(
        distinct(&bodies(haproxy.frontend(), 2).await),
        BTreeSet::from(["old"])
    );

    lb.add_server(BACKEND, "web-1", new.address())
        .await
        .unwrap();

    assert_eq!(
        distinct(&bodies(haproxy.frontend(), 3).await),
        BTreeSet::from(["new"])
    );
    let servers = lb.servers(BACKEND).await.unwrap();
    assert_eq!(servers.len(), 1, "{servers:?}");
    assert_eq!(
        (servers[0].port, servers[0].admin),
        (new.address().port(), Admin::Ready)
    );
}

#[tokio::test]
async fn adding_a_drained_server_again_at_its_address_makes_it_ready() {
    let Some(haproxy) = haproxy_or_skip().await else {
        return;
    };
    let lb = client(&haproxy);
    let a = TestBackend::start("web-a").await;
    lb.add_server(BACKEND, "web-a", a.address()).await.unwrap();
    lb.drain(BACKEND, "web-a").await.unwrap();

    lb.add_server(BACKEND, "web-a", a.address()).await.unwrap();

    let servers = lb.servers(BACKEND).await.unwrap();
    assert_eq!(servers.len(), 1, "{servers:?}");
    assert_eq!(servers[0].admin, Admin::Ready);
    assert_eq!(
        distinct(&bodies(haproxy.frontend(), 2).await),
        BTreeSet::from(["web-a"])
    );
}

#[tokio::test]
async fn the_runtime_api_is_also_reached_over_tcp() {
    let Some(haproxy) = haproxy_or_skip().await else {
        return;
    };
    let lb = Haproxy::new(&format!("tcp://{}", haproxy.runtime_tcp())).unwrap();
    let a = TestBackend::start("web-a").await;
    lb.add_server(BACKEND, "web-a", a.address()).await.unwrap();
    let names: Vec<String> = lb
        .servers(BACKEND)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, vec!["web-a"]);
    assert_eq!(get(haproxy.frontend()).await.body, "web-a");
}

#[tokio::test]
async fn an_unknown_backend_is_refused_naming_it() {
    let Some(haproxy) = haproxy_or_skip().await else {
        return;
    };
    let lb = client(&haproxy);
    let socket = lb.address();

    let err = lb.servers("no-such-backend").await.unwrap_err();
    let LbError::Refused(message) = &err else {
        panic!("expected Refused, got {err:?}");
    };
    assert!(message.contains("\"no-such-backend\""), "{message}");
    assert!(message.contains(&socket), "{message}");
    assert!(
        message.contains("show servers state no-such-backend"),
        "{message}"
    );
    assert!(message.contains("Can't find backend."), "{message}");

    let addr = free_loopback_port();
    let err = lb
        .add_server("no-such-backend", "web-a", addr)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, LbError::Refused(m) if m.contains("no-such-backend")),
        "{err}"
    );
    let err = lb.drain("no-such-backend", "web-a").await.unwrap_err();
    assert!(
        matches!(&err, LbError::Refused(m) if m.contains("set server no-such-backend/web-a \
            state drain") && m.contains("No such backend.")),
        "{err}"
    );
    let err = lb
        .wait_idle("no-such-backend", "web-a", Duration::ZERO)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, LbError::Refused(m) if m.contains("no-such-backend")),
        "{err}"
    );
    let err = lb
        .remove_server("no-such-backend", "web-a")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, LbError::Refused(m) if m.contains("No such backend.")),
        "{err}"
    );
}

#[tokio::test]
async fn draining_a_server_the_backend_lacks_is_refused_with_haproxys_answer() {
    let Some(haproxy) = haproxy_or_skip().await else {
        return;
    };
    let lb = client(&haproxy);
    let err = lb.drain(BACKEND, "ghost").await.unwrap_err();
    let LbError::Refused(message) = &err else {
        panic!("expected Refused, got {err:?}");
    };
    assert!(message.contains(&lb.address()), "{message}");
    assert!(
        message.contains("`set server web/ghost state drain`"),
        "{message}"
    );
    assert!(message.ends_with("No such server."), "{message}");
}

#[tokio::test]
async fn a_backend_that_cannot_take_dynamic_servers_is_refused_with_haproxys_answer() {
    let Some(haproxy) = haproxy_or_skip().await else {
        return;
    };
    let lb = client(&haproxy);
    let err = lb
        .add_server(STATIC_BACKEND, "web-a", free_loopback_port())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, LbError::Refused(m) if m.contains("add server fixed/web-a")
            && m.contains("Backend must use a dynamic load balancing")),
        "{err}"
    );
}

#[tokio::test]
async fn command_refuses_an_unknown_command_and_returns_other_answers_as_they_are() {
    let Some(haproxy) = haproxy_or_skip().await else {
        return;
    };
    let lb = client(&haproxy);
    let err = lb.command("frobnicate the servers").await.unwrap_err();
    assert!(
        matches!(&err, LbError::Refused(m) if m.contains("Unknown command")),
        "{err}"
    );
    let stat = lb.command("show stat web 4 -1").await.unwrap();
    assert!(stat.starts_with("# pxname,svname,"), "{stat}");
}

#[tokio::test]
async fn a_socket_that_does_not_exist_is_unreachable_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.sock");
    let lb = Haproxy::new(&format!("unix://{}", path.display())).unwrap();
    let err = lb.servers(BACKEND).await.unwrap_err();
    let LbError::Unreachable(message) = &err else {
        panic!("expected Unreachable, got {err:?}");
    };
    assert!(message.contains(&path.display().to_string()), "{message}");

    let err = lb
        .add_server(BACKEND, "web-a", free_loopback_port())
        .await
        .unwrap_err();
    assert!(matches!(err, LbError::Unreachable(_)), "{err}");
}

#[tokio::test]
async fn a_tcp_port_nobody_listens_on_is_unreachable_naming_it() {
    let closed = free_loopback_port();
    let lb = Haproxy::new(&format!("tcp://{closed}")).unwrap();
    let err = lb.command("show info").await.unwrap_err();
    assert!(
        matches!(&err, LbError::Unreachable(m) if m.contains(&format!("tcp://{closed}"))),
        "{err}"
    );
}

#[tokio::test]
async fn a_socket_that_never_answers_is_unreachable_after_the_timeout() {
    // A listener that accepts (the kernel does, from its backlog) but never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let lb = Haproxy::new(&format!("tcp://{addr}"))
        .unwrap()
        .with_timeout(Duration::from_millis(300));
    let err = lb.command("show info").await.unwrap_err();
    assert!(
        matches!(&err, LbError::Unreachable(m) if m.contains(&addr.to_string())
            && m.contains("did not answer `show info`")),
        "{err}"
    );
    drop(listener);
}

#[test]
fn an_address_that_is_neither_a_socket_path_nor_tcp_is_an_error() {
    let err = Haproxy::new("http://x").unwrap_err();
    assert!(err.contains("\"http://x\""), "{err}");
    assert!(err.contains("unix:") && err.contains("tcp://"), "{err}");
}

#[tokio::test]
async fn wait_idle_waits_for_a_slow_request_to_finish_on_a_drained_server() {
    let Some(haproxy) = haproxy_or_skip().await else {
        return;
    };
    let lb = client(&haproxy);
    let slow = TestBackend::start_slow("slow", Duration::from_secs(2)).await;
    lb.add_server(BACKEND, "slow", slow.address())
        .await
        .unwrap();

    let frontend = haproxy.frontend();
    let in_flight = tokio::spawn(async move { get(frontend).await });
    wait_for_sessions(&lb, "slow", 1).await;

    lb.drain(BACKEND, "slow").await.unwrap();
    let idle = lb
        .wait_idle(BACKEND, "slow", Duration::from_millis(300))
        .await
        .unwrap();
    assert!(!idle, "the server was idle with a request in flight");

    let answer = in_flight.await.unwrap();
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (200, "slow"),
        "drain cut the request"
    );
    assert!(
        lb.wait_idle(BACKEND, "slow", Duration::from_secs(5))
            .await
            .unwrap()
    );
    lb.remove_server(BACKEND, "slow").await.unwrap();
    assert_eq!(lb.servers(BACKEND).await.unwrap(), vec![]);
}

#[tokio::test]
async fn removing_a_server_with_a_request_in_flight_ends_it_and_deletes_the_server() {
    let Some(haproxy) = haproxy_or_skip().await else {
        return;
    };
    let lb = client(&haproxy);
    let slow = TestBackend::start_slow("slow", Duration::from_secs(3)).await;
    lb.add_server(BACKEND, "slow", slow.address())
        .await
        .unwrap();
    let frontend = haproxy.frontend();
    let in_flight = tokio::spawn(async move { try_get(frontend).await });
    wait_for_sessions(&lb, "slow", 1).await;

    lb.remove_server(BACKEND, "slow").await.unwrap();

    assert_eq!(lb.servers(BACKEND).await.unwrap(), vec![]);
    let answer = in_flight.await.unwrap();
    let served = answer.as_ref().is_ok_and(|a| a.body == "slow");
    assert!(!served, "the session was not shut: {answer:?}");
}

#[tokio::test]
async fn a_kept_client_connection_follows_the_drain_to_another_server() {
    let Some(haproxy) = haproxy_or_skip().await else {
        return;
    };
    let lb = client(&haproxy);
    let (a, b) = (
        TestBackend::start("web-a").await,
        TestBackend::start("web-b").await,
    );
    lb.add_server(BACKEND, "web-a", a.address()).await.unwrap();
    lb.add_server(BACKEND, "web-b", b.address()).await.unwrap();
    let mut browser = KeepAliveClient::connect(haproxy.frontend()).await;
    let first = browser.get().await;
    assert_eq!(first.status, 200, "{first:?}");
    let (used, other) = if first.body == "web-a" {
        ("web-a", "web-b")
    } else {
        ("web-b", "web-a")
    };

    lb.drain(BACKEND, used).await.unwrap();
    let idle = lb
        .wait_idle(BACKEND, used, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(
        idle,
        "an open client connection with no request in flight kept {used} busy"
    );
    for _ in 0..3 {
        assert_eq!(browser.get().await.body, other);
    }
    lb.remove_server(BACKEND, used).await.unwrap();
    let after = browser.get().await;
    assert_eq!((after.status, after.body.as_str()), (200, other));
}

#[tokio::test]
async fn with_redispatch_a_replica_whose_port_is_closed_costs_a_retry_not_an_error() {
    let Some(haproxy) = haproxy_or_skip().await else {
        return;
    };
    let lb = client(&haproxy);
    let live = TestBackend::start("live").await;
    lb.add_server(BACKEND, "dead", free_loopback_port())
        .await
        .unwrap();
    lb.add_server(BACKEND, "live", live.address())
        .await
        .unwrap();

    let seen = bodies(haproxy.frontend(), 6).await;

    assert_eq!(distinct(&seen), BTreeSet::from(["live"]));
}

/// Polls `servers()` until `server` reports at least `sessions`; panics after 10 s.
async fn wait_for_sessions(lb: &Haproxy, server: &str, sessions: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let servers = lb.servers(BACKEND).await.unwrap();
        let now = find(&servers, server).map(|s| s.sessions).unwrap_or(0);
        if now >= sessions {
            assert_eq!(now, sessions, "{servers:?}");
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{server} never reached {sessions} sessions: {servers:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
