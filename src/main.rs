//! The `roller` binary: everything lives in the library; see `cli`.

// Requests and jobs allocate many small, short-lived objects (Redis replies, JSON, log
// lines); under glibc's malloc that was a third of the API's instructions per request.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    roller::cli::main().await
}
