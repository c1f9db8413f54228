//! A standalone mock OpenAI upstream for the benchmark and the SDK compatibility test:
//! `warden-mock [ADDR]` (default 127.0.0.1:9901) echoes chat requests, streams when asked,
//! and answers embeddings and model lists. Test-only: never part of the product.

#[tokio::main]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9901".into());
    let addr = addr.parse().expect("address like 127.0.0.1:9901");
    let mock = warden_testkit::MockUpstream::start_on(addr, false).await;
    println!("mock upstream listening at {}", mock.base_url());
    let _ = tokio::signal::ctrl_c().await;
}
