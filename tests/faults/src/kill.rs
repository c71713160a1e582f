//! The kill harness: runs a stage, SIGKILLs it at a random moment, checks what is left at
//! the final path, repeats, then runs it to completion and checks the result equals an
//! uninterrupted run.
//!
//! Work is organised in rounds. A round starts from a state the stage sets up (no output
//! yet, or a complete output of other input that the round replaces); runs of the round
//! are killed after a delay drawn uniformly from `[0, reference duration]` until one
//! finishes first or the round has had [`KILLS_PER_ROUND`] kills; then the round's command
//! runs to completion and its output is compared with the reference. Rounds repeat until
//! the wanted number of kills. The delays come from a ChaCha generator whose seed is
//! printed; `CONVBASE_FAULTS_SEED` replays a sequence.
//!
//! The commit of an output (the last write and the rename) takes a few milliseconds of a
//! run, so uniform delays almost never hit it. Every third kill therefore waits instead for
//! a new commit marker of the stage (its temporary output file appearing, see
//! [`Stage::commit_markers`]) and kills 0-2 ms after it is seen.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::proc;

/// Kills in one round before it is run to completion, so rounds of each kind alternate.
pub const KILLS_PER_ROUND: usize = 4;

/// A stage under the harness.
pub trait Stage {
    fn name(&self) -> &str;
    /// Sets up the starting state of `round` (e.g. removes the output, or puts an older
    /// complete output in place).
    fn start_round(&mut self, round: usize);
    /// The command of `round`.
    fn command(&self, round: usize) -> Command;
    /// How long an uninterrupted run of `round`'s command takes (the range of kill delays).
    fn duration(&self, round: usize) -> Duration;
    /// Checks the final path right after a kill: absent, or a complete, valid output that
    /// equals an uninterrupted run's. Returns a short description of the state found
    /// (tallied in the report), or what is wrong.
    fn after_kill(&self, round: usize) -> Result<String, String>;
    /// Checks the output of the run to completion against the uninterrupted reference.
    fn after_completion(&self, round: usize) -> Result<(), String>;
    /// Names of the files whose appearance shows the run is committing its output (e.g.
    /// `.NAME.tmp.PID` beside the final path), as they are now.
    fn commit_markers(&self) -> Vec<String>;
}

/// The seed of the kill delays: `CONVBASE_FAULTS_SEED`, or drawn from the clock.
pub fn seed() -> u64 {
    match std::env::var("CONVBASE_FAULTS_SEED") {
        Ok(s) => s.parse().expect("CONVBASE_FAULTS_SEED is a u64"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    }
}

/// What a harness run did.
#[derive(Debug, Default)]
pub struct Report {
    pub kills: usize,
    pub rounds: usize,
    /// Runs that finished before their kill moment.
    pub finished_first: usize,
    /// Kills aimed at the commit (a new commit marker seen).
    pub commit_kills: usize,
    /// How often each state was found after a kill.
    pub states: BTreeMap<String, usize>,
}

/// Kills `stage` at least `kills` times (see the module docs). Panics, naming the seed,
/// round and delay, on the first check that fails.
pub fn run(stage: &mut dyn Stage, kills: usize, seed: u64, limit: Duration) -> Report {
    let name = stage.name().to_string();
    eprintln!("{name}: kill seed {seed} (CONVBASE_FAULTS_SEED={seed} replays it)");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut report = Report::default();
    while report.kills < kills {
        let round = report.rounds;
        stage.start_round(round);
        let max = stage.duration(round).as_micros().max(1) as u64;
        let mut in_round = 0;
        while in_round < KILLS_PER_ROUND && report.kills < kills {
            let at_commit = report.kills % 3 == 2;
            let before = stage.commit_markers();
            let delay = Duration::from_micros(rng.random_range(0..=max));
            let extra = Duration::from_micros(rng.random_range(0..=2000));
            let start = Instant::now();
            let mut child = stage
                .command(round)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("{name}: cannot start: {e}"));
            let finished = if at_commit {
                wait_for_commit(stage, &before, &mut child, extra)
            } else {
                proc::wait_for(&mut child, delay)
            };
            if let Some(status) = finished {
                assert!(
                    status.success(),
                    "{name}: round {round}: a run that was not killed failed ({status})"
                );
                report.finished_first += 1;
                break;
            }
            report.commit_kills += usize::from(at_commit);
            proc::kill(&mut child);
            report.kills += 1;
            in_round += 1;
            let state = stage.after_kill(round).unwrap_or_else(|e| {
                panic!(
                    "{name}: after kill {} (seed {seed}, round {round}, {:.1} ms after start): {e}",
                    report.kills,
                    start.elapsed().as_secs_f64() * 1e3
                )
            });
            *report.states.entry(state).or_default() += 1;
        }
        let done = proc::run(&mut stage.command(round), limit);
        done.expect_code(0, &format!("{name}: round {round} run to completion"));
        stage.after_completion(round).unwrap_or_else(|e| {
            panic!("{name}: round {round} (seed {seed}) completed differently from an uninterrupted run: {e}")
        });
        report.rounds += 1;
    }
    eprintln!(
        "{name}: {} kills ({} at a commit) in {} rounds ({} runs finished before their kill); \
         states after a kill: {:?}",
        report.kills, report.commit_kills, report.rounds, report.finished_first, report.states
    );
    report
}

/// Waits until a commit marker not in `before` appears, then `extra` more; `Some` if the
/// child exited first.
fn wait_for_commit(
    stage: &dyn Stage,
    before: &[String],
    child: &mut std::process::Child,
    extra: Duration,
) -> Option<std::process::ExitStatus> {
    loop {
        if let Some(status) = child.try_wait().expect("waiting for a child") {
            return Some(status);
        }
        if stage.commit_markers().iter().any(|m| !before.contains(m)) {
            return proc::wait_for(child, extra);
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}
