//! `convbase-finetune train|predict`: see `--help`.

fn main() -> std::process::ExitCode {
    convbase_finetune::cli::main()
}
