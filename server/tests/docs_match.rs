//! docs/operations.md's flag table lists exactly the flags `switchboard --help` prints. (Its
//! metrics table is compared with a live `/metrics` after a call in deploy_prometheus.rs.)

use std::collections::BTreeSet;

const OPERATIONS: &str = include_str!("../../docs/operations.md");

/// The backticked `--flag` names in the first column of the table under `## Flags`.
fn documented_flags() -> BTreeSet<String> {
    let section = OPERATIONS
        .split("\n## Flags")
        .nth(1)
        .expect("docs/operations.md has a `## Flags` section");
    let section = section.split("\n## ").next().unwrap_or(section);
    section
        .lines()
        .filter(|line| line.starts_with("| `--"))
        .flat_map(|line| {
            let first_column = line.split('|').nth(1).unwrap_or_default();
            first_column
                .split('`')
                .filter(|part| part.starts_with("--"))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn the_flag_table_matches_help() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("--help")
        .output()
        .expect("runs --help");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    let flags: BTreeSet<String> = help
        .lines()
        .map(str::trim_start)
        .filter_map(|line| {
            let line = line.strip_prefix("-h, ").unwrap_or(line);
            let line = line.strip_prefix("-V, ").unwrap_or(line);
            line.starts_with("--")
                .then(|| line.split([' ', '=', '<']).next().unwrap().to_owned())
        })
        .filter(|flag| flag != "--help" && flag != "--version")
        .collect();
    assert!(flags.len() > 30, "{flags:?}");
    let documented = documented_flags();
    let undocumented: Vec<_> = flags.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&flags).collect();
    assert!(
        undocumented.is_empty() && stale.is_empty(),
        "not in docs/operations.md: {undocumented:?}; documented but gone: {stale:?}"
    );
}
