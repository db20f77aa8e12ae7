//! The command line and the TOML configuration file.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use serde::Deserialize;

use crate::policy::{Policy, Proto};

#[derive(Debug, Parser)]
#[command(
    name = "netjail",
    version,
    about = "Run a command whose network traffic must pass an allow policy",
    after_help = "Rules are space-separated key=value words, for example \
                  'domain=*.github.com port=443'. Keys: domain, port, proto, cidr, and \
                  method and path for plain HTTP requests."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run COMMAND in a network jail.
    Run(RunArgs),
    /// Check what `netjail run` needs on this machine and explain what to change.
    ///
    /// Prints one line per check, the mode `netjail run` would use, and
    /// whether it can start. Runs no command in a jail. Exits with 0 when
    /// `netjail run` can start and with 1 when it cannot.
    Doctor(DoctorArgs),
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,

    /// Check the mode of `netjail run --no-user-namespace`.
    #[arg(long)]
    pub no_user_namespace: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Allow flows matching RULE (repeatable).
    #[arg(long = "allow", value_name = "RULE")]
    pub allow: Vec<String>,

    /// Deny flows matching RULE even if an allow rule matches (repeatable).
    #[arg(long = "deny", value_name = "RULE")]
    pub deny: Vec<String>,

    /// TOML file with `allow` and `deny` lists and the other settings.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Write the JSON Lines audit log to PATH, appending ('-' for standard error).
    #[arg(long, value_name = "PATH")]
    pub audit_log: Option<String>,

    /// Upstream DNS server used on the host side, as IP or IP:PORT
    /// [default: the servers in /etc/resolv.conf].
    #[arg(long, value_name = "ADDR")]
    pub resolver: Option<String>,

    /// Create no user namespace; needs CAP_SYS_ADMIN.
    #[arg(long)]
    pub no_user_namespace: bool,

    /// The command to run and its arguments.
    #[arg(required = true, trailing_var_arg = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

/// The settings of one run, merged from the configuration file and the command line.
#[derive(Debug)]
pub struct Settings {
    pub policy: Policy,
    pub allow_texts: Vec<String>,
    pub deny_texts: Vec<String>,
    pub audit_log: Option<String>,
    pub resolver: Option<String>,
    pub user_namespace: bool,
    pub command: Vec<OsString>,
}

/// The configuration file. Unknown keys are errors so that a typo never goes unnoticed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    deny: Vec<String>,
    audit_log: Option<String>,
    resolver: Option<String>,
    user_namespace: Option<bool>,
}

impl RunArgs {
    /// Merges the configuration file with the command line, which wins for single values and
    /// adds to the rule lists, and checks every rule.
    pub fn into_settings(self) -> anyhow::Result<Settings> {
        let file = match &self.config {
            Some(path) => read_config(path)?,
            None => ConfigFile::default(),
        };
        let allow_texts: Vec<String> = file.allow.into_iter().chain(self.allow).collect();
        let deny_texts: Vec<String> = file.deny.into_iter().chain(self.deny).collect();
        let policy = Policy::parse(&allow_texts, &deny_texts)?;
        check_enforceable(&policy)?;

        let user_namespace = !self.no_user_namespace && file.user_namespace.unwrap_or(true);
        Ok(Settings {
            policy,
            allow_texts,
            deny_texts,
            audit_log: self.audit_log.or(file.audit_log),
            resolver: self.resolver.or(file.resolver),
            user_namespace,
            command: self.command,
        })
    }
}

fn read_config(path: &Path) -> anyhow::Result<ConfigFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading configuration file {}", path.display()))?;
    toml::from_str(&text).with_context(|| {
        format!(
            "invalid configuration file {}; valid keys are allow, deny, audit_log, resolver \
             and user_namespace",
            path.display()
        )
    })
}

/// Rejects rules this version cannot enforce, so that no rule is silently widened or
/// narrowed.
fn check_enforceable(policy: &Policy) -> anyhow::Result<()> {
    let udp = policy
        .allow
        .iter()
        .chain(&policy.deny)
        .find(|rule| rule.protos.contains(&Proto::Udp));
    if let Some(rule) = udp {
        bail!(
            "rule \"{rule}\" names proto=udp, but netjail forwards no UDP except DNS yet; \
             DNS on port 53 is always answered by netjail itself"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_args(args: &[&str]) -> RunArgs {
        let argv = ["netjail", "run"].iter().chain(args);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Run(run) => run,
            command => panic!("expected the run subcommand, got {command:?}"),
        }
    }

    #[test]
    fn command_after_double_dash() {
        let args = run_args(&[
            "--allow",
            "domain=a.test",
            "--",
            "curl",
            "-s",
            "http://a.test",
        ]);
        assert_eq!(args.allow, ["domain=a.test"]);
        assert_eq!(args.command, ["curl", "-s", "http://a.test"]);
    }

    #[test]
    fn doctor_takes_json_and_mode() {
        let cli = Cli::try_parse_from(["netjail", "doctor", "--json", "--no-user-namespace"]);
        match cli.unwrap().command {
            Command::Doctor(args) => {
                assert!(args.json);
                assert!(args.no_user_namespace);
            }
            command => panic!("expected the doctor subcommand, got {command:?}"),
        }
    }

    #[test]
    fn command_is_required() {
        assert!(Cli::try_parse_from(["netjail", "run", "--allow", "domain=a.test"]).is_err());
    }

    #[test]
    fn method_rules_are_accepted() {
        let settings = run_args(&[
            "--allow",
            "domain=a.test method=GET path=/x/*",
            "--",
            "true",
        ])
        .into_settings()
        .unwrap();
        assert!(settings.policy.has_http_rules());
    }

    #[test]
    fn udp_rules_are_rejected_until_forwarded() {
        let err = run_args(&["--allow", "domain=a.test proto=udp", "--", "true"])
            .into_settings()
            .unwrap_err();
        assert!(format!("{err:#}").contains("forwards no UDP"), "{err:#}");
    }

    #[test]
    fn config_file_merges_with_flags() {
        let dir = std::env::temp_dir().join(format!("netjail-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("policy.toml");
        std::fs::write(
            &path,
            "allow = [\"domain=a.test\"]\nresolver = \"127.0.0.1:5353\"\n",
        )
        .unwrap();
        let config = path.to_str().unwrap();
        let settings = run_args(&["--config", config, "--allow", "domain=b.test", "--", "true"])
            .into_settings()
            .unwrap();
        assert_eq!(settings.allow_texts, ["domain=a.test", "domain=b.test"]);
        assert_eq!(settings.resolver.as_deref(), Some("127.0.0.1:5353"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn unknown_config_key_is_rejected() {
        let dir = std::env::temp_dir().join(format!("netjail-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.toml");
        std::fs::write(&path, "alow = [\"domain=a.test\"]\n").unwrap();
        let err = run_args(&["--config", path.to_str().unwrap(), "--", "true"])
            .into_settings()
            .unwrap_err();
        let message = format!("{err:#}");
        assert!(message.contains("alow"), "{message}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
