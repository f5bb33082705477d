//! The `switchboard-netbed` binary as a person uses it: started with flags, driven by lines on
//! its stdin, in front of an echo server; what crosses it is checked with real UDP sockets.

mod common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use common::{client, round_trip, Echo};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

const WAIT: Duration = Duration::from_secs(10);

struct Netbed {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Netbed {
    fn spawn(args: &[&str]) -> Netbed {
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard-netbed"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("the binary starts");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        Netbed {
            child,
            stdin,
            stdout,
        }
    }

    /// The next output line containing `needle` (bounded wait); all lines read are returned.
    async fn expect(&mut self, needle: &str) -> String {
        let mut seen = String::new();
        let found = tokio::time::timeout(WAIT, async {
            while let Ok(Some(line)) = self.stdout.next_line().await {
                seen.push_str(&line);
                seen.push('\n');
                if line.contains(needle) {
                    return true;
                }
            }
            false
        })
        .await;
        assert!(
            matches!(found, Ok(true)),
            "no line with {needle:?}; saw:\n{seen}"
        );
        seen
    }

    async fn command(&mut self, line: &str, answer: &str) -> String {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        self.expect(answer).await
    }
}

#[tokio::test]
async fn a_person_impairs_black_holes_and_rebinds_from_stdin() {
    let echo = Echo::start().await;
    let upstream = echo.addr.to_string();
    let mut netbed = Netbed::spawn(&["--listen", "127.0.0.1:0", "--upstream", &upstream]);
    // "netbed: clients → 127.0.0.1:PORT → server …": the real port of --listen :0.
    let banner = netbed.expect("netbed: clients →").await;
    let listen: SocketAddr = banner
        .lines()
        .find_map(|l| l.split("clients → ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no listen address in {banner:?}"));

    let c = client().await;
    let me = c.local_addr().unwrap().to_string();
    assert!(round_trip(&c, listen, b"clean").await.is_some());
    netbed.command("flows", &me).await;

    netbed.command("loss 100%", "and new ones").await;
    assert!(round_trip(&c, listen, b"lost").await.is_none());
    netbed.command("clear", "and new ones").await;
    assert!(round_trip(&c, listen, b"back").await.is_some());

    netbed
        .command("blackhole all", "black hole on 1 flow")
        .await;
    assert!(round_trip(&c, listen, b"dark").await.is_none());
    netbed.command("restore 1", "restored 1 flow").await;
    assert!(round_trip(&c, listen, b"light").await.is_some());

    let before = echo.last_source().unwrap();
    netbed
        .command("rebind 1", "the server now sees it at")
        .await;
    assert!(round_trip(&c, listen, b"moved").await.is_some());
    assert_ne!(echo.last_source().unwrap(), before);

    // A bad line is an error message, not the end of the tool.
    netbed.command("loss 300%", "error:").await;
    netbed.command("rebind 42", "error:").await;
    assert!(round_trip(&c, listen, b"still").await.is_some());

    netbed.command("quit", &me).await; // the final flow table
    let status = tokio::time::timeout(WAIT, netbed.child.wait())
        .await
        .expect("quit ends the tool")
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn bad_flags_refuse_to_start() {
    let echo = Echo::start().await;
    let upstream = echo.addr.to_string();
    for bad in [
        &["--loss", "150%"][..],
        &["--delay", "5"],
        &["--loss", "5%", "--burst-loss", "2%,30%"],
        &["--rate", "1mbps"],
    ] {
        let mut args = vec!["--listen", "127.0.0.1:0", "--upstream", &upstream];
        args.extend_from_slice(bad);
        let mut netbed = Netbed::spawn(&args);
        let status = tokio::time::timeout(WAIT, netbed.child.wait())
            .await
            .expect("a bad flag ends the tool")
            .unwrap();
        assert!(!status.success(), "{bad:?} accepted");
    }
}
