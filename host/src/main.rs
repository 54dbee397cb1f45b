//! `saguaro`: the command-line tool. Every subcommand returns exit status 1 with a one-line
//! `error: ...` on stderr when anything goes wrong.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
