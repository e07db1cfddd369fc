//! The `roller` binary: everything lives in the library; see `cli`.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    roller::cli::main().await
}
