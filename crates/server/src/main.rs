fn main() -> std::process::ExitCode {
    botlink_server::cli::main()
}
