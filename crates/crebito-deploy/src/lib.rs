//! Reads crebito's deployment, `deploy/docker-compose.yml`: the services, their
//! CPU and memory limits (`deploy.resources.limits`) and their environment.
//!
//! It is the one reader of that file: `scripts/stack` gets the limits it puts
//! on its cgroups and the environment of the API instances from the
//! `crebito-deploy` binary built on this library, and the deployment's budget
//! test (`tests/deploy_compose.rs`, docs/contract.md §4: at most 1.5 CPUs and
//! 550MB in all) reads the same values through it.
//!
//! Units follow Docker Compose (the Compose Specification, "Specifying byte
//! values"): `cpus` is a decimal number of CPUs, memory is bytes with an
//! optional binary unit (`70MB` = 70 × 1024 × 1024 bytes).
#![warn(missing_docs)]

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_yaml::Value;

/// Length of the CFS period `cpus` is measured against, microseconds (what
/// Docker uses: `cpus: "0.2"` is a quota of 20 000 µs per 100 000 µs).
pub const CPU_PERIOD_US: u64 = 100_000;

/// Why the compose file, or a value in it, cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The compose file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not YAML.
    #[error("{path} is not valid YAML: {source}")]
    Yaml {
        /// The compose file.
        path: PathBuf,
        /// The parser's error, with its line and column.
        #[source]
        source: serde_yaml::Error,
    },
    /// The file has no `services` mapping.
    #[error("{path} has no `services` mapping")]
    NoServices {
        /// The compose file.
        path: PathBuf,
    },
    /// No service of that name.
    #[error("{path} has no service `{service}` (it has: {known})")]
    UnknownService {
        /// The compose file.
        path: PathBuf,
        /// The name asked for.
        service: String,
        /// The services the file has, comma-separated.
        known: String,
    },
    /// A limit is missing.
    #[error("service `{service}` in {path} has no deploy.resources.limits.{key}")]
    MissingLimit {
        /// The compose file.
        path: PathBuf,
        /// The service.
        service: String,
        /// `cpus` or `memory`.
        key: &'static str,
    },
    /// A limit is not a value Docker Compose would accept.
    #[error("service `{service}` in {path}: deploy.resources.limits.{key}: {source}")]
    BadLimit {
        /// The compose file.
        path: PathBuf,
        /// The service.
        service: String,
        /// `cpus` or `memory`.
        key: &'static str,
        /// What is wrong with the value.
        #[source]
        source: LimitError,
    },
    /// The service's `environment` cannot be turned into `KEY=VALUE` pairs.
    #[error("service `{service}` in {path}: environment: {reason}")]
    Environment {
        /// The compose file.
        path: PathBuf,
        /// The service.
        service: String,
        /// What is wrong.
        reason: String,
    },
}

/// Why a `cpus` or `memory` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// Not a string or a number.
    #[error("{0} is neither a string nor a number")]
    NotScalar(String),
    /// `cpus` is not a positive decimal with at most 5 places (a quota in whole
    /// microseconds per 100 ms period).
    #[error("{0:?} is not a positive number of CPUs with at most 5 decimal places")]
    Cpus(String),
    /// `memory` is not `<amount>[b|k|m|g|t|p][i][b]`.
    #[error("{0:?} is not a byte value such as \"70MB\" (amount, then b, k, m, g, t or p)")]
    Memory(String),
}

/// A `cpus` limit: a fraction of one CPU's time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cpus {
    text: String,
    quota_us: u64,
}

impl Cpus {
    /// Parses `"0.25"` (or `0.25`, `"2"`). Refuses zero, negative values and
    /// more than 5 decimal places (a quota is whole microseconds per
    /// [`CPU_PERIOD_US`]).
    pub fn parse(text: &str) -> Result<Self, LimitError> {
        let bad = || LimitError::Cpus(text.to_owned());
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if (whole.is_empty() && fraction.is_empty())
            || !digits(whole)
            || !digits(fraction)
            || fraction.len() > 5
        {
            return Err(bad());
        }
        let whole: u64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| bad())?
        };
        let fraction: u64 = format!("{fraction:0<5}").parse().map_err(|_| bad())?;
        let quota_us = whole
            .checked_mul(CPU_PERIOD_US)
            .and_then(|w| w.checked_add(fraction))
            .filter(|&q| q > 0)
            .ok_or_else(bad)?;
        Ok(Self {
            text: text.to_owned(),
            quota_us,
        })
    }

    /// CPU time allowed per [`CPU_PERIOD_US`], microseconds (`0.25` -> 25 000).
    pub fn quota_us(&self) -> u64 {
        self.quota_us
    }

    /// Thousandths of a CPU, rounded down (`0.25` -> 250).
    pub fn millis(&self) -> u64 {
        self.quota_us / 100
    }

    /// The value as written in the file.
    pub fn text(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Cpus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A `memory` limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Memory {
    text: String,
    bytes: u64,
}

impl Memory {
    /// Parses a Compose byte value: an amount, an optional space, then an
    /// optional unit `b`, `k`, `m`, `g`, `t` or `p` (any case), optionally
    /// followed by `i` and/or `b`. Units are binary, as in Docker:
    /// `"70MB"`, `"70m"` and `"70MiB"` are all 73 400 320 bytes. A plain
    /// integer is bytes. Refuses zero.
    pub fn parse(text: &str) -> Result<Self, LimitError> {
        let bad = || LimitError::Memory(text.to_owned());
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (amount, unit) = text.split_at(split);
        let unit = unit.strip_prefix(' ').unwrap_or(unit).to_ascii_lowercase();
        let unit = unit.strip_suffix('b').unwrap_or(&unit);
        let unit = unit.strip_suffix('i').unwrap_or(unit);
        let power = match unit {
            "" => 0,
            "k" => 1,
            "m" => 2,
            "g" => 3,
            "t" => 4,
            "p" => 5,
            _ => return Err(bad()),
        };
        let (whole, fraction) = amount.split_once('.').unwrap_or((amount, ""));
        if whole.is_empty()
            || fraction.contains('.')
            || (amount.contains('.') && fraction.is_empty())
        {
            return Err(bad());
        }
        let scale = 1024u128.pow(power);
        let whole: u128 = whole.parse().map_err(|_| bad())?;
        // The fraction, exactly: digits / 10^len, times the scale, rounded down.
        let fraction_bytes = if fraction.is_empty() {
            0
        } else {
            let digits: u128 = fraction.parse().map_err(|_| bad())?;
            let len = u32::try_from(fraction.len()).map_err(|_| bad())?;
            digits * scale / 10u128.checked_pow(len).ok_or_else(bad)?
        };
        let bytes = whole
            .checked_mul(scale)
            .and_then(|b| b.checked_add(fraction_bytes))
            .and_then(|b| u64::try_from(b).ok())
            .filter(|&b| b > 0)
            .ok_or_else(bad)?;
        Ok(Self {
            text: text.to_owned(),
            bytes,
        })
    }

    /// The limit in bytes.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The amount when the value is written as a whole number of `MB` (the
    /// challenge's notation, docs/contract.md §4: `"70MB"` -> 70), else `None`.
    pub fn megabytes(&self) -> Option<u64> {
        let number = self.text.strip_suffix("MB")?;
        if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        number.parse().ok()
    }

    /// The value as written in the file.
    pub fn text(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Memory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A service's `deploy.resources.limits`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// `cpus`.
    pub cpus: Cpus,
    /// `memory`.
    pub memory: Memory,
}

/// A parsed compose file.
#[derive(Debug, Clone)]
pub struct Compose {
    path: PathBuf,
    document: Value,
}

impl Compose {
    /// Reads and parses the compose file at `path`.
    ///
    /// Errors: [`DeployError::Read`], [`DeployError::Yaml`],
    /// [`DeployError::NoServices`].
    pub fn load(path: impl AsRef<Path>) -> Result<Self, DeployError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| DeployError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses compose `text`; `path` only names the file in errors.
    ///
    /// Errors: [`DeployError::Yaml`], [`DeployError::NoServices`].
    pub fn parse(text: &str, path: impl AsRef<Path>) -> Result<Self, DeployError> {
        let path = path.as_ref().to_owned();
        let document: Value = serde_yaml::from_str(text).map_err(|source| DeployError::Yaml {
            path: path.clone(),
            source,
        })?;
        if !document["services"].is_mapping() {
            return Err(DeployError::NoServices { path });
        }
        Ok(Self { path, document })
    }

    /// The whole document, for checks beyond limits and environment.
    pub fn document(&self) -> &Value {
        &self.document
    }

    /// The file this was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The services' names, in file order.
    pub fn service_names(&self) -> Vec<String> {
        self.services().map(|(name, _)| name).collect()
    }

    /// Every service's definition, in file order.
    pub fn services(&self) -> impl Iterator<Item = (String, &Value)> {
        self.document["services"]
            .as_mapping()
            .into_iter()
            .flatten()
            .map(|(k, v)| (scalar_text(k).unwrap_or_default(), v))
    }

    /// One service's definition. Errors: [`DeployError::UnknownService`].
    pub fn service(&self, name: &str) -> Result<&Value, DeployError> {
        self.services()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
            .ok_or_else(|| DeployError::UnknownService {
                path: self.path.clone(),
                service: name.to_owned(),
                known: self.service_names().join(", "),
            })
    }

    /// A service's `deploy.resources.limits`.
    ///
    /// Errors: [`DeployError::UnknownService`], [`DeployError::MissingLimit`]
    /// when `cpus` or `memory` is absent, [`DeployError::BadLimit`] when one
    /// is not a value Docker Compose accepts.
    pub fn limits(&self, service: &str) -> Result<Limits, DeployError> {
        let limits = &self.service(service)?["deploy"]["resources"]["limits"];
        let value = |key: &'static str| -> Result<String, DeployError> {
            let value = &limits[key];
            if value.is_null() {
                return Err(DeployError::MissingLimit {
                    path: self.path.clone(),
                    service: service.to_owned(),
                    key,
                });
            }
            scalar_text(value).ok_or_else(|| DeployError::BadLimit {
                path: self.path.clone(),
                service: service.to_owned(),
                key,
                source: LimitError::NotScalar(format!("{value:?}")),
            })
        };
        let bad = |key: &'static str| {
            move |source| DeployError::BadLimit {
                path: self.path.clone(),
                service: service.to_owned(),
                key,
                source,
            }
        };
        Ok(Limits {
            cpus: Cpus::parse(&value("cpus")?).map_err(bad("cpus"))?,
            memory: Memory::parse(&value("memory")?).map_err(bad("memory"))?,
        })
    }

    /// A service's `environment` as written (no `${VAR}` interpolation), in
    /// either of Compose's forms: a mapping, or a list of `KEY=VALUE`. Numbers
    /// and booleans become their text; an absent `environment` is empty.
    ///
    /// Errors: [`DeployError::UnknownService`]; [`DeployError::Environment`]
    /// for an entry without a value (Docker would take it from the host's
    /// environment, which a deployment must not depend on), a key twice, or a
    /// value that is not a scalar.
    pub fn environment(&self, service: &str) -> Result<BTreeMap<String, String>, DeployError> {
        let bad = |reason: String| DeployError::Environment {
            path: self.path.clone(),
            service: service.to_owned(),
            reason,
        };
        let mut pairs = Vec::new();
        match &self.service(service)?["environment"] {
            Value::Null => {}
            Value::Mapping(mapping) => {
                for (k, v) in mapping {
                    let key = scalar_text(k).ok_or_else(|| bad(format!("key {k:?}")))?;
                    let value = match v {
                        Value::Null => return Err(bad(format!("{key} has no value"))),
                        v => scalar_text(v)
                            .ok_or_else(|| bad(format!("{key} is not a scalar: {v:?}")))?,
                    };
                    pairs.push((key, value));
                }
            }
            Value::Sequence(items) => {
                for item in items {
                    let entry = item
                        .as_str()
                        .ok_or_else(|| bad(format!("entry {item:?} is not a string")))?;
                    let (key, value) = entry
                        .split_once('=')
                        .ok_or_else(|| bad(format!("{entry} has no value")))?;
                    pairs.push((key.to_owned(), value.to_owned()));
                }
            }
            other => return Err(bad(format!("neither a mapping nor a list: {other:?}"))),
        }
        let mut environment = BTreeMap::new();
        for (key, value) in pairs {
            if environment.insert(key.clone(), value).is_some() {
                return Err(bad(format!("{key} is set twice")));
            }
        }
        Ok(environment)
    }
}

/// The text of a YAML string, number or boolean.
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpus_become_a_quota_per_100_ms() {
        for (text, quota) in [
            ("0.2", 20_000),
            ("0.25", 25_000),
            (".5", 50_000),
            ("1", 100_000),
            ("1.5", 150_000),
            ("0.00001", 1),
        ] {
            let cpus = Cpus::parse(text).unwrap();
            assert_eq!(cpus.quota_us(), quota, "{text}");
            assert_eq!(cpus.text(), text);
        }
        assert_eq!(Cpus::parse("0.25").unwrap().millis(), 250);
        for bad in [
            "", ".", "0", "0.0", "-1", "1e3", "0.000001", "abc", "1.2.3", " 1",
        ] {
            assert_eq!(
                Cpus::parse(bad),
                Err(LimitError::Cpus(bad.into())),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn memory_uses_dockers_binary_units() {
        const MIB: u64 = 1024 * 1024;
        for (text, bytes) in [
            ("70MB", 70 * MIB),
            ("70m", 70 * MIB),
            ("70MiB", 70 * MIB),
            ("70 MB", 70 * MIB),
            ("1.5g", 1536 * MIB),
            ("512k", 512 * 1024),
            ("100b", 100),
            ("4096", 4096),
        ] {
            assert_eq!(Memory::parse(text).unwrap().bytes(), bytes, "{text}");
        }
        for bad in [
            "", "MB", "0", "0MB", "70XB", "-70MB", "70MBB", "1..5g", "1.g", "7 0MB",
        ] {
            assert_eq!(
                Memory::parse(bad),
                Err(LimitError::Memory(bad.into())),
                "{bad:?}"
            );
        }
        assert_eq!(Memory::parse("70MB").unwrap().megabytes(), Some(70));
        for not_mb in ["70m", "70MiB", "1.5MB", "73400320"] {
            assert_eq!(Memory::parse(not_mb).unwrap().megabytes(), None, "{not_mb}");
        }
    }

    const FILE: &str = r#"
services:
  api:
    environment:
      A: "1"
      B: 2
      C: true
    deploy:
      resources:
        limits:
          cpus: "0.2"
          memory: 70MB
  listed:
    environment:
      - A=x=y
      - B=
    deploy:
      resources:
        limits:
          cpus: 0.5
          memory: "1g"
  bare: {}
"#;

    #[test]
    fn reads_limits_and_both_forms_of_environment() {
        let compose = Compose::parse(FILE, "test.yml").unwrap();
        assert_eq!(compose.service_names(), ["api", "listed", "bare"]);
        let api = compose.limits("api").unwrap();
        assert_eq!(
            (api.cpus.quota_us(), api.memory.bytes()),
            (20_000, 70 << 20)
        );
        let listed = compose.limits("listed").unwrap();
        assert_eq!(
            (listed.cpus.text(), listed.memory.bytes()),
            ("0.5", 1 << 30)
        );
        let env = compose.environment("api").unwrap();
        let env: Vec<_> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(env, ["A=1", "B=2", "C=true"]);
        let env = compose.environment("listed").unwrap();
        assert_eq!(env["A"], "x=y");
        assert_eq!(env["B"], "");
        assert!(compose.environment("bare").unwrap().is_empty());
    }

    #[test]
    fn says_what_is_missing_or_wrong() {
        let compose = Compose::parse(FILE, "test.yml").unwrap();
        let message = |e: DeployError| e.to_string();
        assert_eq!(
            message(compose.limits("nope").unwrap_err()),
            "test.yml has no service `nope` (it has: api, listed, bare)"
        );
        assert_eq!(
            message(compose.limits("bare").unwrap_err()),
            "service `bare` in test.yml has no deploy.resources.limits.cpus"
        );
        let bad = FILE.replace("memory: 70MB", "memory: 70XB");
        let compose = Compose::parse(&bad, "test.yml").unwrap();
        assert!(matches!(
            compose.limits("api"),
            Err(DeployError::BadLimit { key: "memory", .. })
        ));
        for (environment, reason) in [
            ("{A: }", "A has no value"),
            ("[A]", "A has no value"),
            ("[A=1, A=2]", "A is set twice"),
            ("{A: [1]}", "A is not a scalar"),
            ("x", "neither a mapping nor a list"),
        ] {
            let text = format!("services:\n  s:\n    environment: {environment}\n");
            let error = Compose::parse(&text, "t.yml")
                .unwrap()
                .environment("s")
                .unwrap_err()
                .to_string();
            assert!(error.contains(reason), "{environment}: {error}");
        }
        assert!(matches!(
            Compose::parse("services: [", "t.yml"),
            Err(DeployError::Yaml { .. })
        ));
        assert!(matches!(
            Compose::parse("name: x\n", "t.yml"),
            Err(DeployError::NoServices { .. })
        ));
    }
}
