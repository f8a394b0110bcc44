//! The `drill` binary: parse arguments, run the library, exit with its code.

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(drill::cli::main())
}
