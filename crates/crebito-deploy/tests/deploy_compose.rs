//! The deployment's budget and shape (docs/contract.md §4), checked from the files in
//! `deploy/` without a Docker engine: the compose file's limits, the single
//! published port, the two API instances, and the rules the other deployment
//! files must keep (durability on, every PostgreSQL deviation explained, no
//! second copy of the schema). Limits and environment are read through
//! `crebito_deploy`, the same reader `scripts/stack` uses.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crebito_deploy::{Compose, Limits};
use serde_yaml::Value;

/// Most CPU time the whole stack may use, microseconds per 100 ms (1.5 CPUs).
const CPU_BUDGET_QUOTA_US: u64 = 150_000;
/// Most memory the whole stack may use, in MB.
const MEMORY_BUDGET_MB: u64 = 550;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/crebito-deploy sits two levels below the repository root")
        .to_path_buf()
}

fn read(relative: &str) -> String {
    let path = repo_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The PostgreSQL topology's compose file.
const POSTGRES_COMPOSE: &str = "deploy/docker-compose.yml";
/// The embedded topology's: two instances sharing one SQLite file.
const SQLITE_COMPOSE: &str = "deploy/docker-compose.sqlite.yml";

fn load(relative: &str) -> Compose {
    Compose::load(repo_root().join(relative)).unwrap_or_else(|e| panic!("{e}"))
}

fn compose() -> Compose {
    load(POSTGRES_COMPOSE)
}

/// Every compose file: the rules of the budget and shape hold for each.
fn every_compose() -> Vec<Compose> {
    [POSTGRES_COMPOSE, SQLITE_COMPOSE].map(load).into()
}

fn services(compose: &Compose) -> BTreeMap<String, Value> {
    compose
        .services()
        .map(|(name, def)| (name, def.clone()))
        .collect()
}

/// The service's limits, which must be written as strings (`"0.25"`,
/// `"70MB"`: YAML would read `0.10` as the number 0.1) and memory in whole MB
/// (the challenge's notation).
fn limits(compose: &Compose, service: &str) -> Limits {
    let limits = compose.limits(service).unwrap_or_else(|e| panic!("{e}"));
    let written = &compose.document()["services"][service]["deploy"]["resources"]["limits"];
    for key in ["cpus", "memory"] {
        assert!(
            written[key].is_string(),
            "{service}: deploy.resources.limits.{key} must be a string like \"0.25\" or \"70MB\", got {:?}",
            written[key]
        );
    }
    assert!(
        limits.memory.megabytes().is_some(),
        "{service}: memory {:?} must be a whole number of MB",
        limits.memory.text()
    );
    limits
}

/// Container ports a service publishes on the host: (host port, container port).
fn published_ports(service: &str, def: &Value) -> Vec<(String, String)> {
    let Some(ports) = def.get("ports") else {
        return Vec::new();
    };
    ports
        .as_sequence()
        .unwrap_or_else(|| panic!("{service}: ports must be a list"))
        .iter()
        .map(|p| match p {
            Value::String(s) => {
                let s = s.split('/').next().unwrap();
                let parts: Vec<&str> = s.rsplitn(3, ':').collect();
                match parts.as_slice() {
                    [container] => (String::new(), container.to_string()),
                    [container, host, ..] => (host.to_string(), container.to_string()),
                    [] => unreachable!(),
                }
            }
            Value::Number(n) => (String::new(), n.to_string()),
            Value::Mapping(_) => {
                let text = |v: &Value| match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    _ => String::new(),
                };
                (text(&p["published"]), text(&p["target"]))
            }
            other => panic!("{service}: unexpected port entry {other:?}"),
        })
        .collect()
}

fn is_api(def: &Value) -> bool {
    def.get("build").is_some()
        || def["image"]
            .as_str()
            .is_some_and(|i| i.starts_with("crebito"))
}

/// The service's environment, whose values must be written as strings (quote
/// numbers).
fn environment(compose: &Compose, service: &str) -> BTreeMap<String, String> {
    let written = &compose.document()["services"][service]["environment"];
    for (key, value) in written
        .as_mapping()
        .unwrap_or_else(|| panic!("{service}: environment must be a mapping"))
    {
        assert!(
            value.is_string(),
            "{service}: environment values are strings (quote numbers), {key:?} is {value:?}"
        );
    }
    compose
        .environment(service)
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn limits_stay_within_the_budget_and_every_service_has_them() {
    for compose in every_compose() {
        limits_stay_within_the_budget(&compose);
    }
}

fn limits_stay_within_the_budget(compose: &Compose) {
    let file = compose.path().display();
    let names = compose.service_names();
    assert!(!names.is_empty());
    let (mut quota_us, mut memory_mb) = (0, 0);
    for name in &names {
        let limits = limits(compose, name);
        quota_us += limits.cpus.quota_us();
        memory_mb += limits.memory.megabytes().unwrap();
    }
    assert!(
        quota_us <= CPU_BUDGET_QUOTA_US,
        "{file}: the services' cpus add up to {}.{:05}, more than 1.5",
        quota_us / 100_000,
        quota_us % 100_000
    );
    assert!(
        memory_mb <= MEMORY_BUDGET_MB,
        "{file}: the services' memory adds up to {memory_mb}MB, more than {MEMORY_BUDGET_MB}MB"
    );
}

#[test]
fn only_the_load_balancer_publishes_port_9999() {
    for compose in every_compose() {
        only_the_load_balancer_publishes(&compose);
    }
}

fn only_the_load_balancer_publishes(compose: &Compose) {
    let services = services(compose);
    let lb = services
        .get("lb")
        .expect("a service named `lb` (the load balancer)");
    assert!(
        lb["image"]
            .as_str()
            .is_some_and(|i| i.starts_with("nginx:")),
        "lb runs nginx"
    );
    assert_eq!(
        published_ports("lb", lb),
        vec![("9999".to_owned(), "9999".to_owned())],
        "lb publishes exactly 9999:9999"
    );
    for (name, def) in services.iter().filter(|(n, _)| *n != "lb") {
        assert!(
            published_ports(name, def).is_empty(),
            "{name} publishes a port; only the load balancer may"
        );
    }
}

#[test]
fn exactly_two_identical_api_instances_behind_the_balancer() {
    for compose in every_compose() {
        exactly_two_identical_api_instances(&compose);
    }
}

fn exactly_two_identical_api_instances(compose: &Compose) {
    let services = services(compose);
    let apis: Vec<&String> = services
        .iter()
        .filter(|(_, d)| is_api(d))
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        apis,
        ["api01", "api02"],
        "exactly two API services, api01 and api02"
    );

    let nginx = read("deploy/nginx.conf");
    let (a, b) = (&services["api01"], &services["api02"]);
    assert_eq!(
        limits(compose, "api01"),
        limits(compose, "api02"),
        "both instances get the same limits"
    );
    let (mut env_a, mut env_b) = (environment(compose, "api01"), environment(compose, "api02"));
    for (name, env) in [("api01", &env_a), ("api02", &env_b)] {
        let listen = env
            .get("CREBITO_LISTEN")
            .unwrap_or_else(|| panic!("{name} sets CREBITO_LISTEN"));
        let upstream = match listen.strip_prefix("unix:") {
            Some(path) => format!("server unix:{path} "),
            None => format!("server {name}:{} ", listen.rsplit(':').next().unwrap()),
        };
        assert!(
            nginx.contains(&upstream),
            "deploy/nginx.conf has no `{upstream}` for {name}"
        );
        assert!(env.contains_key("DATABASE_URL"), "{name} sets DATABASE_URL");
    }
    env_a.remove("CREBITO_LISTEN");
    env_b.remove("CREBITO_LISTEN");
    assert_eq!(
        env_a, env_b,
        "api01 and api02 differ only in CREBITO_LISTEN"
    );
    for key in ["image", "build", "volumes", "healthcheck", "depends_on"] {
        assert_eq!(a.get(key), b.get(key), "api01 and api02 differ in `{key}`");
    }
}

/// The start order (docs/deployment.md, "Start order"): the instances wait
/// for a healthy database, the balancer for started instances. The
/// instances carry no Docker health check, the image's HEALTHCHECK turned
/// off: Docker runs a check by `exec` inside the container's cgroup, and
/// setting the exec up costs 16-22 ms of CPU, most of a 0.2-CPU instance's
/// 20 ms per 100 ms period (docs/benchmark-log.md).
#[test]
fn the_start_order_waits_for_the_database_and_no_check_runs_in_an_instance() {
    let compose = compose();
    let services = services(&compose);
    let db = services.get("db").expect("a service named `db`");
    let image = db["image"].as_str().expect("db has an image");
    let major: u32 = image
        .strip_prefix("postgres:")
        .and_then(|tag| tag.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("db image {image:?} must be postgres:<pinned major>"));
    assert!(
        major >= 16,
        "db runs PostgreSQL {major}; at least 16 is required"
    );
    let db_test = serde_yaml::to_string(&db["healthcheck"]["test"]).unwrap();
    assert!(
        db_test.contains("pg_isready"),
        "db's health check uses pg_isready"
    );
    for api in ["api01", "api02"] {
        assert_eq!(
            services[api]["depends_on"]["db"]["condition"].as_str(),
            Some("service_healthy"),
            "{api} waits for a healthy db"
        );
    }
    for compose in every_compose() {
        let defs = crate::services(&compose);
        for api in ["api01", "api02"] {
            assert_eq!(
                defs[api]["healthcheck"],
                serde_yaml::from_str::<Value>("disable: true").unwrap(),
                "{api}'s health check is `disable: true` and nothing else: Docker's exec-based check costs 16-22 ms of CPU inside the instance's quota"
            );
            assert_eq!(
                defs["lb"]["depends_on"][api]["condition"].as_str(),
                Some("service_started"),
                "lb waits for {api} started (it has no health check to wait for)"
            );
        }
    }
    // A HEALTHCHECK stays in the image for `docker run` without a CPU quota;
    // it must be the binary itself (no shell, no curl).
    let image = read("Dockerfile");
    assert!(
        image.contains(r#"CMD ["crebito", "healthcheck"]"#),
        "the image's HEALTHCHECK is `crebito healthcheck`"
    );
}

#[test]
fn postgresql_conf_keeps_durability_and_explains_every_deviation() {
    let conf = read("deploy/postgresql.conf");
    let mut settings = BTreeMap::new();
    // A setting is explained by a comment on its line or by the comment block
    // right above it (a block may explain several settings in a row).
    let mut previous_is_comment = false;
    for (n, raw) in conf.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() {
            previous_is_comment = false;
            continue;
        }
        if line.starts_with('#') {
            previous_is_comment = true;
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("postgresql.conf:{}: not `name = value`: {raw}", n + 1));
        let key = key.trim().to_ascii_lowercase();
        let value = value
            .split('#')
            .next()
            .unwrap()
            .trim()
            .trim_matches('\'')
            .to_ascii_lowercase();
        assert!(
            previous_is_comment || raw.contains('#'),
            "postgresql.conf:{}: `{key}` has no comment saying why",
            n + 1
        );
        assert!(
            settings.insert(key.clone(), value).is_none(),
            "`{key}` is set twice"
        );
    }
    for key in ["fsync", "synchronous_commit", "full_page_writes"] {
        let value = settings.get(key).map(String::as_str).unwrap_or("on");
        assert_eq!(value, "on", "{key} must stay on (durability)");
    }
    for key in ["wal_level", "data_directory"] {
        assert!(
            !settings.contains_key(key),
            "{key} is not for this file to change"
        );
    }
}

#[test]
fn the_schema_has_one_source_the_api_migrations() {
    let deploy = repo_root().join("deploy");
    for entry in std::fs::read_dir(&deploy).unwrap() {
        let path = entry.unwrap().path();
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let upper = text.to_ascii_uppercase();
        for forbidden in ["CREATE TABLE", "INSERT INTO", "UNLOGGED"] {
            assert!(
                !upper.contains(forbidden),
                "{} contains `{forbidden}`: the schema and seed live only in crates/crebito/migrations",
                path.display()
            );
        }
    }
    assert!(
        repo_root()
            .join("crates/crebito/migrations/postgres")
            .is_dir(),
        "the API's PostgreSQL migrations are where deploy/ expects them"
    );
}

#[test]
fn the_image_runs_the_binary_as_a_non_root_user() {
    let dockerfile = read("Dockerfile");
    let last_stage = dockerfile
        .rsplit_once("\nFROM ")
        .map(|(_, s)| s)
        .expect("a multi-stage Dockerfile");
    let user = last_stage
        .lines()
        .filter_map(|l| l.trim().strip_prefix("USER "))
        .next_back()
        .expect("the final stage sets USER");
    assert!(
        !["root", "0"].contains(&user.trim()),
        "the image must not run as root"
    );
    assert!(
        last_stage.contains("ENTRYPOINT [\"crebito\"]"),
        "ENTRYPOINT is the binary"
    );
    assert!(last_stage.contains("CMD [\"serve\"]"), "CMD is serve");
    assert!(
        last_stage.contains("HEALTHCHECK"),
        "the image has a HEALTHCHECK"
    );
    for secret in ["PASSWORD", "SECRET", "TOKEN"] {
        assert!(
            !dockerfile
                .to_ascii_uppercase()
                .contains(&format!("{secret}=")),
            "no {secret} baked into the image"
        );
    }
}

/// The image builds with the classic builder of Docker Engine 20.10 as well as
/// with BuildKit (scripts/compose builds it with the former): no `# syntax=`
/// line (BuildKit would fetch that frontend image from a registry), no
/// BuildKit-only `--chmod`/`--chown=...` flags on `COPY`, and every workspace
/// member's manifest named in `.dockerignore` (that builder ignores an
/// exception with a wildcard under an excluded directory, so the skeleton
/// stage would miss the other members' manifests and cargo would fail).
#[test]
fn the_image_builds_with_the_classic_builder_too() {
    let dockerfile = read("Dockerfile");
    for line in dockerfile.lines() {
        assert!(
            !line
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("# syntax="),
            "Dockerfile: `{line}` makes BuildKit pull a frontend image"
        );
        let line = line.trim_start();
        if line.starts_with("COPY ") || line.starts_with("ADD ") {
            assert!(
                !line.contains("--chmod") && !line.contains("--link"),
                "Dockerfile: `{line}` needs BuildKit"
            );
        }
    }
    let ignore = read(".dockerignore");
    let entries: Vec<&str> = ignore.lines().map(str::trim).collect();
    let members = std::fs::read_dir(repo_root().join("crates")).expect("crates/");
    let mut checked = 0;
    for member in members {
        let name = member.expect("a crates/ entry").file_name();
        let name = name.to_string_lossy();
        if !repo_root()
            .join("crates")
            .join(&*name)
            .join("Cargo.toml")
            .is_file()
        {
            continue;
        }
        let exception = format!("!crates/{name}/Cargo.toml");
        assert!(
            entries.contains(&exception.as_str()),
            ".dockerignore must name {exception} (a wildcard is not followed by every builder)"
        );
        checked += 1;
    }
    assert!(
        checked >= 2,
        "the workspace members were found under crates/"
    );
}

#[test]
fn nginx_never_retries_a_post_and_closes_idle_upstreams_first() {
    let nginx = read("deploy/nginx.conf");
    let directives: Vec<&str> = nginx
        .lines()
        .map(|l| l.split('#').next().unwrap().trim())
        .filter(|l| !l.is_empty())
        .collect();
    for d in directives
        .iter()
        .filter(|d| d.starts_with("proxy_next_upstream "))
    {
        assert!(
            !d.contains("non_idempotent"),
            "`{d}` would let nginx send a POST to a second instance after the first got it"
        );
    }
    assert!(
        directives.iter().any(|d| d.starts_with("access_log off")),
        "access log off"
    );

    // The upstream keep-alive idle timeout must be shorter than the API's
    // (CREBITO_IDLE_TIMEOUT_SECS, 75 s by default), so nginx closes first.
    let compose = compose();
    let api_idle: u64 = environment(&compose, "api01")
        .get("CREBITO_IDLE_TIMEOUT_SECS")
        .map_or(75, |v| {
            v.parse().expect("CREBITO_IDLE_TIMEOUT_SECS is a number")
        });
    let upstream = nginx
        .split("upstream api {")
        .nth(1)
        .and_then(|rest| rest.split('}').next())
        .expect("deploy/nginx.conf has an `upstream api { ... }` block");
    let timeout = upstream
        .lines()
        .map(|l| l.split('#').next().unwrap().trim())
        .find_map(|l| l.strip_prefix("keepalive_timeout "))
        .expect("the upstream block sets keepalive_timeout");
    let secs: u64 = timeout
        .trim_end_matches(';')
        .trim_end_matches('s')
        .parse()
        .expect("keepalive_timeout in whole seconds, e.g. 60s");
    assert!(
        secs < api_idle,
        "nginx's upstream keepalive_timeout ({secs} s) must be shorter than the API's idle timeout ({api_idle} s)"
    );

    // An instance that refused a connection is skipped for fail_timeout;
    // while both are skipped every client gets a 502. nginx's default
    // (10 s) kept a restarted instance out long enough for a second
    // restart to cut everyone off for 8.8 s (docs/deployment.md).
    let servers: Vec<&str> = upstream
        .lines()
        .map(|l| l.split('#').next().unwrap().trim())
        .filter(|l| l.starts_with("server "))
        .collect();
    assert_eq!(servers.len(), 2, "two upstream servers: {servers:?}");
    for server in servers {
        let fail_timeout = server
            .trim_end_matches(';')
            .split_whitespace()
            .find_map(|w| w.strip_prefix("fail_timeout="))
            .unwrap_or_else(|| panic!("`{server}` leaves fail_timeout at nginx's 10 s"));
        assert!(
            matches!(fail_timeout, "1s" | "1"),
            "`{server}`: fail_timeout={fail_timeout}, expected 1s"
        );
    }
}

/// What one connection may cost an instance while its request head (at most
/// 8192 bytes, crebito's `server::MAX_HEAD_BYTES`) arrives, KiB: 16 to 19
/// KiB measured by scripts/memory (docs/deployment.md), rounded up.
const CONNECTION_KIB: u64 = 20;
/// What an instance uses without connections, MB: 6.7 MB measured by
/// scripts/memory on SQLite, rounded up for the PostgreSQL pool.
const INSTANCE_BASE_MB: u64 = 12;

#[test]
fn the_connection_cap_fits_the_instance_memory() {
    for compose in every_compose() {
        the_connection_cap_fits(&compose);
    }
}

fn the_connection_cap_fits(compose: &Compose) {
    for (name, _) in services(compose).iter().filter(|(_, d)| is_api(d)) {
        let memory_mb = limits(compose, name).memory.megabytes().unwrap();
        let cap: u64 = environment(compose, name)
            .get("CREBITO_MAX_CONNECTIONS")
            .unwrap_or_else(|| {
                panic!("{name} sets CREBITO_MAX_CONNECTIONS (the default 4096 does not fit)")
            })
            .parse()
            .expect("a number");
        let worst_mb = INSTANCE_BASE_MB + cap * CONNECTION_KIB / 1024;
        assert!(
            worst_mb <= memory_mb,
            "{name}: {cap} connections x {CONNECTION_KIB} KiB + {INSTANCE_BASE_MB} MB = {worst_mb} MB > {memory_mb} MB"
        );
    }
}

/// The embedded topology (docs/deployment.md): no database service; both
/// instances open the same SQLite file, an absolute path on one named
/// volume mounted at the same place in each (one local file system, so
/// that SQLite's locks and the writer lock work).
#[test]
fn the_sqlite_instances_share_one_file_on_one_volume() {
    let compose = load(SQLITE_COMPOSE);
    let services = services(&compose);
    let mut names = compose.service_names();
    names.sort();
    assert_eq!(
        names,
        ["api01", "api02", "lb"],
        "{SQLITE_COMPOSE}: nginx and two instances, no database server"
    );
    let named_volumes = &compose.document()["volumes"];
    let mut files = Vec::new();
    for api in ["api01", "api02"] {
        let url = &environment(&compose, api)["DATABASE_URL"];
        let file = url
            .strip_prefix("sqlite://")
            .filter(|path| path.starts_with('/'))
            .unwrap_or_else(|| {
                panic!("{api}: DATABASE_URL {url:?} is not sqlite:///absolute/path")
            });
        let mount = services[api]["volumes"]
            .as_sequence()
            .expect("volumes")
            .iter()
            .filter_map(Value::as_str)
            .filter_map(|v| v.split_once(':'))
            .find(|(_, target)| file.starts_with(&format!("{}/", target.trim_end_matches('/'))))
            .unwrap_or_else(|| panic!("{api}: no volume holds {file}"));
        assert!(
            named_volumes.get(mount.0).is_some(),
            "{api}: {file} is on {:?}, which is not a named volume",
            mount.0
        );
        assert!(
            services[api].get("depends_on").is_none(),
            "{api} waits for nothing: there is no database server"
        );
        files.push((file.to_owned(), mount.0.to_owned()));
    }
    assert_eq!(
        files[0], files[1],
        "both instances open the same file on the same volume"
    );
}
