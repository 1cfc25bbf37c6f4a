//! The `xiaowo` command; everything it does lives in the library.

/// Every delivery to a watcher allocates and frees its frame, its body's pieces and its
/// wake-ups; glibc's allocator was ~15 % of the server's CPU on that path, jemalloc takes less
/// of it and holds less memory per watcher (BENCHMARKS.md).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    xiaowo::cli::main()
}
