use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    coop_idp::cli::main().await
}
