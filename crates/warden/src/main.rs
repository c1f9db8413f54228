//! The `warden` binary: the command line, process concerns (environment, signals, exit codes,
//! logging) and the wiring of the library crates. Only this crate reads the environment.

mod agents_setup;
mod approvals_cmd;
mod audit_cmd;
mod cli;
mod connections;
mod demo;
mod keys_cmd;
mod serve;
mod settings;
mod usage_cmd;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            cli::Command::Demo(args) => demo::run(&cli.global, args).await,
            cli::Command::Serve(args) => serve::run(&cli.global, args).await,
            cli::Command::Keys { command } => keys_cmd::run(&cli.global, command).await,
            cli::Command::Usage(args) => usage_cmd::run(&cli.global, args).await,
            cli::Command::Approvers { command } => match command {
                cli::ApproversCommand::Keygen { name, dir } => approvals_cmd::keygen(&name, &dir),
            },
            cli::Command::Approvals { command } => approvals_cmd::run(command).await,
            cli::Command::Approve {
                id,
                approver,
                key,
                comment,
                remote,
            } => {
                approvals_cmd::decide(
                    remote,
                    id,
                    approver,
                    key,
                    warden_tools::approval::Decision::Approve,
                    comment,
                )
                .await
            }
            cli::Command::Deny {
                id,
                approver,
                key,
                reason,
                remote,
            } => {
                approvals_cmd::decide(
                    remote,
                    id,
                    approver,
                    key,
                    warden_tools::approval::Decision::Deny,
                    Some(reason),
                )
                .await
            }
            cli::Command::Audit { command } => match command {
                cli::AuditCommand::Verify {
                    public_key,
                    from,
                    to,
                    max_age,
                } => audit_cmd::verify(&cli.global, public_key, from, to, max_age).await,
                cli::AuditCommand::Search {
                    from,
                    to,
                    key,
                    request_id,
                    limit,
                } => {
                    let filter = audit_cmd::Filter {
                        from,
                        to,
                        key,
                        request_id,
                        limit,
                    };
                    audit_cmd::search(&cli.global, filter).await
                }
            },
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(settings::Failure::Config(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
        Err(settings::Failure::Runtime(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Targets whose debug logs carry SQL text (the agents' queries, with the values in them):
/// kept at `warn` unless the operator names them in `RUST_LOG`.
const QUIET_SQL: &str = "sqlparser=warn,sqlx=warn";

/// The tracing filter from `RUST_LOG` (default `info`), with [`QUIET_SQL`] added unless the
/// operator names those targets. The flag says they did: their query text may then be logged
/// (the caller warns once, after the subscriber is installed).
pub(crate) fn log_filter() -> (tracing_subscriber::EnvFilter, bool) {
    let (spec, names_sql) = log_filter_spec(std::env::var("RUST_LOG").ok().as_deref());
    let filter = tracing_subscriber::EnvFilter::try_new(&spec)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("info,{QUIET_SQL}")));
    (filter, names_sql)
}

fn log_filter_spec(rust_log: Option<&str>) -> (String, bool) {
    let spec = rust_log
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or("info");
    let names_sql = spec.split(',').any(|directive| {
        let target = directive.split(['=', '[']).next().unwrap_or("").trim();
        target.starts_with("sqlx") || target.starts_with("sqlparser")
    });
    if names_sql {
        (spec.to_owned(), true)
    } else {
        (format!("{spec},{QUIET_SQL}"), false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_targets_are_quiet_unless_named() {
        assert_eq!(
            log_filter_spec(None),
            ("info,sqlparser=warn,sqlx=warn".into(), false)
        );
        assert_eq!(
            log_filter_spec(Some("debug")),
            ("debug,sqlparser=warn,sqlx=warn".into(), false)
        );
        assert_eq!(
            log_filter_spec(Some("debug,sqlx=debug")),
            ("debug,sqlx=debug".into(), true)
        );
        assert_eq!(
            log_filter_spec(Some("sqlparser=trace")),
            ("sqlparser=trace".into(), true)
        );
    }
}
