#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    registrar::cli::main()
}
