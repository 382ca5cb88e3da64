fn main() -> std::process::ExitCode {
    pgha::app::main()
}
