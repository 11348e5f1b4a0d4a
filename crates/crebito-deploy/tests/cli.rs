//! The `crebito-deploy` binary, as `scripts/stack` calls it: its lines carry
//! exactly what the library reads, and a broken file is an error (exit 1)
//! that names the file and the value, never a silently empty answer.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crebito_deploy::Compose;

fn repo_compose() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .join("deploy/docker-compose.yml")
}

fn run(compose: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_crebito-deploy"))
        .arg("--compose")
        .arg(compose)
        .args(args)
        .output()
        .expect("crebito-deploy runs")
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[test]
fn prints_the_deployed_limits_and_environment() {
    let path = repo_compose();
    let compose = Compose::load(&path).unwrap();
    let names = stdout(&run(&path, &["services"]));
    assert_eq!(names.lines().collect::<Vec<_>>(), compose.service_names());

    let lines = stdout(&run(&path, &["limits"]));
    assert_eq!(lines.lines().count(), compose.service_names().len());
    for line in lines.lines() {
        let fields: Vec<&str> = line.splitn(5, ' ').collect();
        let limits = compose.limits(fields[0]).unwrap();
        assert_eq!(
            fields[1..],
            [
                limits.cpus.quota_us().to_string().as_str(),
                &limits.memory.bytes().to_string(),
                limits.cpus.text(),
                limits.memory.text()
            ]
        );
    }
    // The values scripts/stack writes into the cgroups, spelled out once.
    assert_eq!(
        stdout(&run(&path, &["limits", "api01"])),
        "api01 20000 73400320 0.2 70MB\n"
    );

    let env = stdout(&run(&path, &["env", "api02"]));
    let expected: String = compose
        .environment("api02")
        .unwrap()
        .iter()
        .map(|(k, v)| format!("{k}={v}\n"))
        .collect();
    assert_eq!(env, expected);
    assert!(env.contains("CREBITO_LISTEN=unix:/run/crebito/api02.sock\n"));
}

#[test]
fn a_broken_file_is_an_error_that_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("compose.yml");
    std::fs::write(
        &file,
        "services:\n  a:\n    environment: {K: \"a\\nb\"}\n    deploy: {resources: {limits: {cpus: \"0.2\"}}}\n",
    )
    .unwrap();
    for (args, message) in [
        (&["limits"][..], "no deploy.resources.limits.memory"),
        (&["limits", "b"], "has no service `b` (it has: a)"),
        (&["env", "a"], "K holds a line break"),
    ] {
        let output = run(&file, args);
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        assert!(output.stdout.is_empty(), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(message) && stderr.contains(&*file.to_string_lossy()),
            "{args:?}: {stderr}"
        );
    }
    let missing = run(&dir.path().join("absent.yml"), &["services"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read"));
}
