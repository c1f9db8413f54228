//! `warden usage`: the usage report of `GET /v1/usage`, read from the data directory's store.

use crate::cli::{Global, UsageArgs};
use crate::settings::{self, Failure};
use anyhow::Context;
use warden_core::time::{iso8601, parse_time};
use warden_store::GroupBy;

/// Prints the report.
pub async fn run(global: &Global, args: UsageArgs) -> Result<(), Failure> {
    let group = GroupBy::parse(&args.group_by).ok_or_else(|| {
        Failure::Config(format!(
            "--group-by: `{}` is not one of: key, model, day",
            args.group_by
        ))
    })?;
    let now = warden_core::time::unix_secs();
    let time = |flag: &str, v: &Option<String>, default: i64| match v {
        None => Ok(default),
        Some(t) => parse_time(t).map_err(|m| Failure::Config(format!("--{flag}: {m}"))),
    };
    let from = time("from", &args.from, now - 30 * 86_400)?;
    let to = time("to", &args.to, now + 1)?;
    if from >= to {
        return Err(Failure::Config("--from must be before --to".into()));
    }
    let config = settings::load(global)?;
    let store = settings::open_store(global, &config).await?;
    let groups = store
        .usage_report(group, from * 1000, to * 1000)
        .await
        .context("cannot read usage")?;
    if args.json {
        let rows: Vec<_> = groups.iter().map(warden_server::group_json).collect();
        println!("{}", serde_json::Value::from(rows));
        return Ok(());
    }
    eprintln!("usage from {} to {}", iso8601(from), iso8601(to));
    println!(
        "{:<28} {:>9} {:>12} {:>12} {:>11} {:>9} {:>8} {:>8}",
        "GROUP", "REQUESTS", "PROMPT", "COMPLETION", "COST_USD", "CACHE_HIT", "LIMITED", "BUDGET"
    );
    for g in &groups {
        let label = match &g.name {
            Some(n) => format!("{n} ({})", g.group),
            None => g.group.clone(),
        };
        let hit = if g.cache_lookups > 0 {
            format!(
                "{:.1}%",
                100.0 * g.cache_hits as f64 / g.cache_lookups as f64
            )
        } else {
            "-".into()
        };
        println!(
            "{:<28} {:>9} {:>12} {:>12} {:>11.6} {:>9} {:>8} {:>8}",
            label,
            g.requests,
            g.prompt_tokens,
            g.completion_tokens,
            g.cost_usd,
            hit,
            g.rate_limited,
            g.budget_refused
        );
    }
    Ok(())
}
