//! `tandem`: the command line of the tandem disaster-recovery system. Wiring only:
//! `tandem server` runs one server (the `server` crate); every other command is the
//! `cli` crate's.

#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::Duration;

use cli::{ServerArgs, Status};

/// mimalloc rather than glibc's malloc: under sign-in load glibc's spent about a fifth of
/// the Front End's CPU in `_int_malloc` and its locks, memory being freed on other threads
/// than allocated it (tokio moves tasks between workers). Built without transparent huge
/// pages (`no_thp` in the workspace's Cargo.toml): with them, each page mimalloc took
/// back from the kernel was a 2 MiB page to zero, about a fifth of the CPU under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    cli::main(serve)
}

fn serve(args: ServerArgs) -> Status {
    cli::init_tracing(args.log_format);
    let config = server::Config {
        fqdn: args.fqdn.to_ascii_lowercase(),
        data_dir: args.data_dir,
        backend_root: args.backend_root,
        token: args.admin_token,
        dns: args.dns,
        certificate_authority: args.certificate_authority,
        reconcile_after: Duration::from_secs(args.reconcile_after_secs),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    cli::outcome(rt.block_on(server::run(config)))
}
