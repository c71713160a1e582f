//! `convbase-head-dense train|predict`: see `--help`.

fn main() -> std::process::ExitCode {
    convbase_train::cli::main::<convbase_head_dense::DenseHead>()
}
