//! The `xiaowo` command; everything it does lives in the library.

fn main() -> std::process::ExitCode {
    xiaowo::cli::main()
}
