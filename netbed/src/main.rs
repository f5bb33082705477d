//! `switchboard-netbed`: the network test bed for people. Put it between a browser (or any
//! WebRTC client) and the SFU's media port, impair the path, and change it while the call runs
//! by typing commands on stdin. See docs/loadtest.md, "Network test bed".

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use netbed::impairment::{
    parse_bytes, parse_duration, parse_probability, parse_rate, LinkImpairment,
};
use netbed::{FlowId, FlowInfo, Impairment, Proxy, ProxyConfig, ProxyHandle, Target};
use tokio::io::{AsyncBufReadExt, BufReader};

#[derive(Parser, Debug)]
#[command(
    name = "switchboard-netbed",
    about = "UDP impairment proxy for loopback: loss, burst loss, delay, jitter, rate limit, \
             black hole and NAT rebinding between WebRTC clients and the SFU's media port"
)]
struct Args {
    /// Where clients send (the address the server announces: --announce-media-addr).
    #[arg(long, default_value = "127.0.0.1:3479")]
    listen: SocketAddr,
    /// The SFU's media address (its --media-addr).
    #[arg(long, default_value = "127.0.0.1:3478")]
    upstream: SocketAddr,
    /// Which direction the impairment flags (and later stdin commands) apply to:
    /// up = client → server, down = server → client.
    #[arg(long, value_enum, default_value = "both")]
    direction: Direction,
    /// Random loss, e.g. 5% or 0.05.
    #[arg(long, value_parser = parse_probability)]
    loss: Option<f32>,
    /// Gilbert-Elliott bursty loss "p,r": enter a burst with probability p per packet, leave
    /// it with r (mean loss ≈ p/(p+r), mean burst 1/r packets), e.g. 2%,30%.
    #[arg(long, value_parser = parse_burst)]
    burst_loss: Option<(f32, f32)>,
    /// One-way delay, e.g. 30ms.
    #[arg(long, value_parser = parse_duration)]
    delay: Option<Duration>,
    /// Delay variation (uniform ±jitter), e.g. 10ms.
    #[arg(long, value_parser = parse_duration)]
    jitter: Option<Duration>,
    /// Bottleneck rate in bits per second, e.g. 1mbit or 500kbit.
    #[arg(long, value_parser = parse_rate)]
    rate: Option<u64>,
    /// Queue of the bottleneck (tail drop beyond it), e.g. 64kb.
    #[arg(long, value_parser = parse_bytes, default_value = "64kb")]
    rate_buffer: u64,
    /// Duplicate this share of packets, e.g. 1%.
    #[arg(long, value_parser = parse_probability)]
    duplicate: Option<f32>,
    /// Send every Nth packet ahead of the delay queue (reordering).
    #[arg(long)]
    reorder_gap: Option<u32>,
    /// Seed of the random decisions (same seed, same traffic → same losses).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Most client flows at once.
    #[arg(long, default_value_t = 64)]
    max_flows: usize,
    /// Forget a flow after this long without traffic, e.g. 60s.
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    idle_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Direction {
    Both,
    Up,
    Down,
}

fn parse_burst(s: &str) -> Result<(f32, f32), String> {
    let (p, r) = s
        .split_once(',')
        .ok_or("write p,r (e.g. 2%,30%)".to_owned())?;
    let p = parse_probability(p).map_err(|e| e.to_string())?;
    let r = parse_probability(r).map_err(|e| e.to_string())?;
    LinkImpairment::none()
        .burst_loss(p, r)
        .to_netem()
        .map_err(|e| e.to_string())?;
    Ok((p, r))
}

/// One change to a link, from a flag or a stdin command.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Change {
    Loss(f32),
    BurstLoss(f32, f32),
    Delay(Duration),
    Jitter(Duration),
    Rate(Option<u64>),
    Duplicate(f32),
    Clear,
}

impl Change {
    fn apply(self, link: &mut LinkImpairment, rate_buffer: u64) {
        match self {
            Change::Loss(p) => link.loss = LinkImpairment::none().random_loss(p).loss,
            Change::BurstLoss(p, r) => link.loss = LinkImpairment::none().burst_loss(p, r).loss,
            Change::Delay(d) => link.delay = d,
            Change::Jitter(j) => link.jitter = j,
            Change::Rate(None) => link.rate = None,
            Change::Rate(Some(bps)) => {
                link.rate = LinkImpairment::none().rate(bps, rate_buffer).rate
            }
            Change::Duplicate(p) => link.duplicate = p,
            Change::Clear => *link = LinkImpairment::none().seed(link.seed),
        }
    }
}

/// A stdin command.
#[derive(Debug, Clone, PartialEq)]
enum Command {
    Flows,
    Help,
    Quit,
    Direction(Direction),
    Change(Change, Which),
    Blackhole(Which),
    Restore(Which),
    Rebind(FlowId),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    All,
    Flow(FlowId),
}

impl From<Which> for Target {
    fn from(w: Which) -> Target {
        match w {
            Which::All => Target::All,
            Which::Flow(id) => Target::Flow(id),
        }
    }
}

const HELP: &str = "\
commands (a flow is its number from `flows`; impairment commands apply to all flows and to new
flows unless a flow number follows, and to the directions chosen with `direction`):
  flows                      list flows and their counters
  loss 10% [flow]            random loss          burst-loss 2%,30% [flow]  Gilbert-Elliott loss
  delay 30ms [flow]          one-way delay        jitter 10ms [flow]        delay variation
  rate 1mbit|off [flow]      bottleneck rate      duplicate 1% [flow]       duplication
  clear [flow]               no impairment        direction up|down|both
  blackhole <flow|all>       drop everything      restore <flow|all>        end the black hole
  rebind <flow>              new source port towards the server (a network switch)
  help, quit";

fn parse_which(word: Option<&str>, default_all: bool) -> Result<Which, String> {
    match word {
        None if default_all => Ok(Which::All),
        None => Err("name a flow number (see `flows`) or all".to_owned()),
        Some("all") => Ok(Which::All),
        Some(n) => n
            .trim_start_matches('#')
            .parse()
            .map(|n| Which::Flow(FlowId(n)))
            .map_err(|_| format!("{n:?} is not a flow number")),
    }
}

fn parse_command(line: &str) -> Result<Option<Command>, String> {
    let mut words = line.split_whitespace();
    let Some(verb) = words.next() else {
        return Ok(None);
    };
    let arg = words.next();
    let rest = words.next();
    if words.next().is_some() {
        return Err("too many words (see `help`)".to_owned());
    }
    let need = |what: &str| arg.ok_or(format!("{verb} needs {what}"));
    let change = |c: Change| -> Result<Option<Command>, String> {
        Ok(Some(Command::Change(c, parse_which(rest, true)?)))
    };
    let e = |e: netbed::ImpairmentError| e.to_string();
    match verb {
        "flows" | "f" => Ok(Some(Command::Flows)),
        "help" | "?" => Ok(Some(Command::Help)),
        "quit" | "exit" => Ok(Some(Command::Quit)),
        "direction" => match need("up, down or both")? {
            "up" => Ok(Some(Command::Direction(Direction::Up))),
            "down" => Ok(Some(Command::Direction(Direction::Down))),
            "both" => Ok(Some(Command::Direction(Direction::Both))),
            other => Err(format!("direction {other:?}: up, down or both")),
        },
        "loss" => change(Change::Loss(
            parse_probability(need("a share")?).map_err(e)?,
        )),
        "burst-loss" => {
            let (p, r) = parse_burst(need("p,r")?)?;
            change(Change::BurstLoss(p, r))
        }
        "delay" => change(Change::Delay(
            parse_duration(need("a duration")?).map_err(e)?,
        )),
        "jitter" => change(Change::Jitter(
            parse_duration(need("a duration")?).map_err(e)?,
        )),
        "rate" => match need("a rate or off")? {
            "off" => change(Change::Rate(None)),
            r => change(Change::Rate(Some(parse_rate(r).map_err(e)?))),
        },
        "duplicate" => change(Change::Duplicate(
            parse_probability(need("a share")?).map_err(e)?,
        )),
        "clear" => Ok(Some(Command::Change(
            Change::Clear,
            parse_which(arg, true)?,
        ))),
        "blackhole" | "restore" | "rebind" if rest.is_some() => {
            Err(format!("{verb} takes one flow"))
        }
        "blackhole" => Ok(Some(Command::Blackhole(parse_which(arg, false)?))),
        "restore" => Ok(Some(Command::Restore(parse_which(arg, false)?))),
        "rebind" => match parse_which(arg, false)? {
            Which::Flow(id) => Ok(Some(Command::Rebind(id))),
            Which::All => Err("rebind one flow at a time".to_owned()),
        },
        other => Err(format!("unknown command {other:?} (see `help`)")),
    }
}

fn change_impairment(
    mut imp: Impairment,
    change: Change,
    direction: Direction,
    rate_buffer: u64,
) -> Impairment {
    if direction != Direction::Down {
        change.apply(&mut imp.uplink, rate_buffer);
    }
    if direction != Direction::Up {
        change.apply(&mut imp.downlink, rate_buffer);
    }
    imp
}

fn print_flows(flows: &[FlowInfo]) {
    if flows.is_empty() {
        println!("no flows yet: send media to the listen address");
        return;
    }
    println!(
        "{:<5} {:<22} {:<22} {:<10} {:<22} {:<22} impairment",
        "flow", "client", "server sees", "state", "up in/out/drop", "down in/out/drop"
    );
    for f in flows {
        let counts =
            |d: &netbed::DirStats| format!("{}/{}/{}", d.packets_in, d.packets_out, d.dropped());
        println!(
            "{:<5} {:<22} {:<22} {:<10} {:<22} {:<22} up: {} | down: {}",
            f.id.0,
            f.client.to_string(),
            f.upstream_local.to_string(),
            if f.blackholed { "BLACKHOLE" } else { "ok" },
            counts(&f.uplink),
            counts(&f.downlink),
            f.impairment.uplink,
            f.impairment.downlink,
        );
    }
}

/// Carry out one command; returns false on quit.
async fn run_command(
    proxy: &ProxyHandle,
    command: Command,
    direction: &mut Direction,
    rate_buffer: u64,
) -> anyhow::Result<bool> {
    match command {
        Command::Quit => return Ok(false),
        Command::Help => println!("{HELP}"),
        Command::Flows => print_flows(&proxy.flows()),
        Command::Direction(d) => {
            *direction = d;
            println!("impairment commands now apply to: {d:?}");
        }
        Command::Change(change, Which::All) => {
            let imp =
                change_impairment(proxy.default_impairment(), change, *direction, rate_buffer);
            proxy.set_default_impairment(imp)?;
            let n = proxy.set_impairment(Target::All, imp).await?;
            println!(
                "up: {} | down: {}  ({n} flows and new ones)",
                imp.uplink, imp.downlink
            );
        }
        Command::Change(change, Which::Flow(id)) => {
            let current = proxy.flow(id)?.impairment;
            let imp = change_impairment(current, change, *direction, rate_buffer);
            proxy.set_impairment(id, imp).await?;
            println!("flow {id}: up: {} | down: {}", imp.uplink, imp.downlink);
        }
        Command::Blackhole(which) => {
            let n = proxy.blackhole(which)?;
            println!("black hole on {n} flow(s)");
        }
        Command::Restore(which) => {
            let n = proxy.restore(which)?;
            println!("restored {n} flow(s)");
        }
        Command::Rebind(id) => {
            let addr = proxy.rebind(id).await?;
            println!("flow {id}: the server now sees it at {addr}");
        }
    }
    Ok(true)
}

fn initial_impairment(args: &Args) -> anyhow::Result<Impairment> {
    let mut link = LinkImpairment::none().seed(args.seed);
    let changes = [
        args.loss.map(Change::Loss),
        args.burst_loss.map(|(p, r)| Change::BurstLoss(p, r)),
        args.delay.map(Change::Delay),
        args.jitter.map(Change::Jitter),
        args.rate.map(|r| Change::Rate(Some(r))),
        args.duplicate.map(Change::Duplicate),
    ];
    if args.loss.is_some() && args.burst_loss.is_some() {
        bail!("--loss and --burst-loss are two loss models: choose one");
    }
    for change in changes.into_iter().flatten() {
        change.apply(&mut link, args.rate_buffer);
    }
    link.reorder_gap = args.reorder_gap;
    if link.is_clean() {
        eprintln!("no impairment flags: the link starts clean (type `help`)");
    }
    let clean = LinkImpairment::none().seed(args.seed);
    let imp = Impairment {
        uplink: if args.direction != Direction::Down {
            link
        } else {
            clean
        },
        downlink: if args.direction != Direction::Up {
            link
        } else {
            clean
        },
    };
    imp.validate().context("impairment flags")?;
    Ok(imp)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "netbed=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let default_impairment = initial_impairment(&args)?;
    let config = ProxyConfig {
        max_flows: args.max_flows,
        idle_timeout: args.idle_timeout,
        default_impairment,
        ..ProxyConfig::default()
    };
    let proxy = Proxy::start_with(args.listen, args.upstream, config).await?;
    println!(
        "netbed: clients → {} → server {}  (up: {} | down: {}, seed {})",
        proxy.listen_addr(),
        proxy.upstream_addr(),
        default_impairment.uplink,
        default_impairment.downlink,
        args.seed
    );
    println!("type `help` for commands");
    let handle = proxy.handle();
    let mut direction = args.direction;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        print!("> ");
        let _ = std::io::stdout().flush();
        let line = tokio::select! {
            line = lines.next_line() => line?,
            _ = tokio::signal::ctrl_c() => None,
        };
        // End of input (or ^C): stop.
        let Some(line) = line else { break };
        match parse_command(&line) {
            Ok(None) => {}
            Ok(Some(command)) => {
                match run_command(&handle, command, &mut direction, args.rate_buffer).await {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(e) => println!("error: {e}"),
                }
            }
            Err(e) => println!("error: {e}"),
        }
    }
    print_flows(&handle.flows());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_and_bad_ones_are_errors() {
        assert_eq!(parse_command("  ").unwrap(), None);
        assert_eq!(parse_command("flows").unwrap(), Some(Command::Flows));
        assert_eq!(
            parse_command("loss 10%").unwrap(),
            Some(Command::Change(Change::Loss(0.1), Which::All))
        );
        assert_eq!(
            parse_command("delay 30ms 2").unwrap(),
            Some(Command::Change(
                Change::Delay(Duration::from_millis(30)),
                Which::Flow(FlowId(2))
            ))
        );
        assert_eq!(
            parse_command("blackhole all").unwrap(),
            Some(Command::Blackhole(Which::All))
        );
        assert_eq!(
            parse_command("rebind 3").unwrap(),
            Some(Command::Rebind(FlowId(3)))
        );
        for bad in [
            "loss",
            "loss 200%",
            "rebind all",
            "rebind",
            "blackhole",
            "frobnicate",
            "delay 5",
            "burst-loss 2%",
            "burst-loss 2%,0",
            "rate 1mbps",
            "loss 5% 1 2",
        ] {
            assert!(parse_command(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn changes_touch_only_the_chosen_direction() {
        let imp = change_impairment(Impairment::none(), Change::Loss(0.1), Direction::Up, 1000);
        assert_ne!(imp.uplink, LinkImpairment::none());
        assert_eq!(imp.downlink, LinkImpairment::none());
        let imp = change_impairment(imp, Change::Clear, Direction::Both, 1000);
        assert!(imp.uplink.is_clean() && imp.downlink.is_clean());
    }
}
