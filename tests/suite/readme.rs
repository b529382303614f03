//! The README's examples, run as written, so that they cannot drift from the
//! contract and the servers again.
//!
//! The convention the README states: every block fenced as `sh` under the
//! walk-through's sections ("A first call" to "The feedback API") is one
//! story, run in order in one shell; the block under "A production-like
//! trial" is run on its own; blocks fenced as `console` or `text` are not
//! run. The blocks are read from `README.md` itself and run with
//! `bash -euo pipefail`, with the README's ports (and the production trial's
//! database and Redis) rewritten to the test's own. grpcurl is the project's
//! (`make tools` installs it at `.tools/bin/grpcurl`); it is reached through
//! a recording wrapper at `./.tools/bin/grpcurl` of the run's working folder,
//! which the README's own `PATH` line puts first, so that every call's answer
//! can be checked afterwards.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use cairn::Suite;
use cairn_runtime::{ServiceKind, Settings};
use cairn_tests::{TestDatabase, delete_redis_prefix, process::cairn_binary, redis_url};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// The sections whose `sh` blocks make the walk-through on `make run`.
const WALK_THROUGH: [&str; 5] = [
    "A first call",
    "The profile API",
    "The journey API",
    "The recommendation API",
    "The feedback API",
];

/// The section of the trial on PostgreSQL and Redis with authentication on.
const PRODUCTION_TRIAL: &str = "A production-like trial";

/// The README's addresses of the four services, in `ServiceKind::ALL`'s order.
const README_PORTS: [u16; 4] = [50051, 50052, 50053, 50054];

/// The production trial's database and Redis URLs as the README writes them.
const README_DATABASE_URL: &str = "postgres://cairn:change-me@127.0.0.1:5432/cairn";
const README_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// How long one run of README blocks may take.
const RUN_LIMIT: Duration = Duration::from_secs(240);

/// One fenced `sh` block of the README.
struct Block {
    /// The `##` section it is under.
    section: String,
    /// The README line of its first command (1-based).
    first_line: usize,
    /// Its commands.
    text: String,
}

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the repository holds tests/")
        .to_path_buf()
}

fn readme() -> String {
    let path = repository().join("README.md");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

/// The `sh` blocks under `sections`, in the README's order.
fn sh_blocks(readme: &str, sections: &[&str]) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut section = String::new();
    let mut open: Option<(String, usize, Vec<&str>)> = None;
    for (index, line) in readme.lines().enumerate() {
        if let Some((language, first_line, lines)) = &mut open {
            if line.trim_end() == "```" {
                if language == "sh" && sections.contains(&section.as_str()) {
                    blocks.push(Block {
                        section: section.clone(),
                        first_line: *first_line,
                        text: lines.join("\n"),
                    });
                }
                open = None;
            } else {
                lines.push(line);
            }
            continue;
        }
        if let Some(fence) = line.strip_prefix("```") {
            open = Some((fence.trim().to_string(), index + 2, Vec::new()));
        } else if let Some(heading) = line.strip_prefix("## ") {
            section = heading.trim().to_string();
        }
    }
    assert!(open.is_none(), "README.md ends inside a fenced block");
    for wanted in sections {
        assert!(
            blocks.iter().any(|block| block.section == *wanted),
            "README.md has no `sh` block under \"## {wanted}\""
        );
    }
    blocks
}

/// The project's grpcurl, or a failure saying how to get it.
fn project_grpcurl() -> PathBuf {
    let grpcurl = repository().join(".tools/bin/grpcurl");
    assert!(
        grpcurl.is_file(),
        "grpcurl is missing at {}: run `make tools` (or `make test`, which installs it)",
        grpcurl.display()
    );
    let jq = std::process::Command::new("jq").arg("--version").output();
    assert!(
        matches!(jq, Ok(output) if output.status.success()),
        "jq is missing: run `make jq` (or `make test`, which installs it)"
    );
    grpcurl
}

/// A working folder for one run: `./.tools/bin/grpcurl` records each call
/// (its method and what it printed) in `transcript` and passes everything
/// through; `./bin/cairn` is this tree's `cairn`.
fn working_folder(with_cairn: bool) -> PathBuf {
    let real = project_grpcurl();
    let folder = std::env::temp_dir().join(format!("cairn-readme-{}", uuid::Uuid::new_v4()));
    let tools = folder.join(".tools/bin");
    std::fs::create_dir_all(&tools).unwrap();
    let wrapper = format!(
        "#!/usr/bin/env bash\n\
         # Records the call's method and answer for tests/suite/readme.rs.\n\
         status=0\n\
         answer=$('{real}' \"$@\") || status=$?\n\
         printf '%s\\n' \"$answer\"\n\
         {{ printf '>>> %s %s\\n' \"${{@: -1}}\" \"$status\"; printf '%s\\n' \"$answer\"; }} >> '{transcript}'\n\
         exit $status\n",
        real = real.display(),
        transcript = folder.join("transcript").display(),
    );
    let path = tools.join("grpcurl");
    std::fs::write(&path, wrapper).unwrap();
    make_executable(&path);
    if with_cairn {
        let bin = folder.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::os::unix::fs::symlink(cairn_binary(), bin.join("cairn")).unwrap();
    }
    folder
}

fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut permissions = std::fs::metadata(path).unwrap().permissions();
    permissions.set_mode(0o755);
    std::fs::set_permissions(path, permissions).unwrap();
}

/// The script of `blocks`: each block's commands, with a trap that names the
/// line of a command that fails. Returns the script and, per script line,
/// the README line it came from.
fn script(blocks: &[Block], rewrites: &[(String, String)]) -> (String, Vec<usize>) {
    let mut script = String::from(
        "trap 'echo \"README-FAILED script-line=$LINENO status=$? command=$BASH_COMMAND\" >&2' ERR\n",
    );
    let mut origins = vec![0];
    for block in blocks {
        for (offset, line) in block.text.lines().enumerate() {
            let mut line = line.to_string();
            for (from, to) in rewrites {
                line = line.replace(from, to);
            }
            script.push_str(&line);
            script.push('\n');
            origins.push(block.first_line + offset);
        }
    }
    (script, origins)
}

/// What a run printed, and each grpcurl call's method, exit status and answer.
struct Run {
    stdout: String,
    calls: Vec<Call>,
}

/// One grpcurl call of a run.
struct Call {
    method: String,
    status: i32,
    answer: String,
}

impl Run {
    /// The answers of the calls to `method` (the last part of the name), in order.
    fn answers(&self, method: &str) -> Vec<Value> {
        self.calls
            .iter()
            .filter(|call| call.method.rsplit('/').next() == Some(method))
            .map(|call| {
                serde_json::from_str(&call.answer).unwrap_or_else(|error| {
                    panic!(
                        "{method} answered what is not JSON ({error}):\n{}",
                        call.answer
                    )
                })
            })
            .collect()
    }

    /// The answer of the only call to `method`, as printed (for calls in
    /// protobuf text format).
    fn text_answer(&self, method: &str) -> &str {
        let mut calls = self
            .calls
            .iter()
            .filter(|call| call.method.rsplit('/').next() == Some(method));
        let call = calls
            .next()
            .unwrap_or_else(|| panic!("no call to {method}"));
        assert!(calls.next().is_none(), "one call to {method}");
        &call.answer
    }

    /// The only answer of the calls to `method`.
    fn answer(&self, method: &str) -> Value {
        let answers = self.answers(method);
        assert_eq!(answers.len(), 1, "one call to {method}");
        answers.into_iter().next().unwrap()
    }
}

/// Runs `blocks` in one `bash -euo pipefail` in `folder` with `environment`,
/// and fails with the block, the command and what grpcurl said when a
/// command fails.
async fn run(
    blocks: &[Block],
    rewrites: &[(String, String)],
    folder: &Path,
    environment: &[(&str, String)],
) -> Run {
    let (script, origins) = script(blocks, rewrites);
    let script_path = folder.join("readme.sh");
    std::fs::write(&script_path, &script).unwrap();
    let path = format!(
        "{}:{}:{}:{}",
        folder.join(".tools/bin").display(),
        folder.join("bin").display(),
        repository().join(".tools/bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut command = tokio::process::Command::new("bash");
    command
        .args(["-euo", "pipefail"])
        .arg(&script_path)
        .current_dir(folder)
        .env("PATH", path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    for (name, value) in environment {
        command.env(name, value);
    }
    let child = command.spawn().expect("bash runs");
    let group = child.id().expect("a running child");
    let output = tokio::time::timeout(RUN_LIMIT, child.wait_with_output()).await;
    // Whatever the blocks left running in the background (a `cairn serve`
    // of a failed run) ends with them.
    let _ = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{group}")])
        .stderr(Stdio::null())
        .status();
    let transcript = std::fs::read_to_string(folder.join("transcript")).unwrap_or_default();
    let Ok(output) = output else {
        panic!(
            "the README's blocks did not end within {RUN_LIMIT:?}; the calls so far:\n{}",
            tail(&transcript, 60)
        );
    };
    let output = output.expect("bash ran");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if !output.status.success() {
        let failed = stderr
            .lines()
            .rev()
            .find_map(|line| line.strip_prefix("README-FAILED "))
            .unwrap_or("(no command reported: a syntax error?)");
        let readme_line = failed
            .strip_prefix("script-line=")
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|line| line.parse::<usize>().ok())
            .and_then(|line| origins.get(line.saturating_sub(1)).copied())
            .unwrap_or(0);
        let block = blocks
            .iter()
            .rev()
            .find(|block| block.first_line <= readme_line)
            .or(blocks.first());
        panic!(
            "a README example failed ({}).\n\
             README.md line {readme_line}, in the block under \"## {}\" at line {}:\n{}\n\n\
             failed: {failed}\n\n\
             grpcurl and the shell said (stderr, last lines):\n{}\n\n\
             printed (stdout, last lines):\n{}{}",
            output.status,
            block.map(|block| block.section.as_str()).unwrap_or(""),
            block.map(|block| block.first_line).unwrap_or(0),
            block.map(|block| block.text.as_str()).unwrap_or(""),
            tail(&stderr, 40),
            tail(&stdout, 40),
            std::fs::read_to_string(folder.join("cairn.log"))
                .map(|log| format!("\n\ncairn.log (last lines):\n{}", tail(&log, 30)))
                .unwrap_or_default(),
        );
    }
    Run {
        stdout,
        calls: calls(&transcript),
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The calls the grpcurl wrapper recorded.
fn calls(transcript: &str) -> Vec<Call> {
    let mut calls: Vec<Call> = Vec::new();
    for line in transcript.lines() {
        if let Some(header) = line.strip_prefix(">>> ") {
            let (method, status) = header.rsplit_once(' ').unwrap_or((header, "0"));
            calls.push(Call {
                method: method.to_string(),
                status: status.parse().unwrap_or(-1),
                answer: String::new(),
            });
        } else if let Some(call) = calls.last_mut() {
            call.answer.push_str(line);
            call.answer.push('\n');
        }
    }
    calls
}

/// The rewrites of the README's service addresses to `addresses`.
fn port_rewrites(ports: &BTreeMap<ServiceKind, u16>) -> Vec<(String, String)> {
    ServiceKind::ALL
        .iter()
        .zip(README_PORTS)
        .map(|(service, readme_port)| {
            (
                format!("127.0.0.1:{readme_port}"),
                format!("127.0.0.1:{}", ports[service]),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_readme_walk_through_runs_top_to_bottom_on_make_runs_defaults() {
    let blocks = sh_blocks(&readme(), &WALK_THROUGH);
    let folder = working_folder(false);

    // `make run`: the embedded defaults (SQLite files, in-process bus and
    // sessions) with authentication off, on ephemeral ports.
    let mut settings = Settings::defaults();
    for service in ServiceKind::ALL {
        settings.set_port(service, 0);
    }
    settings.data_dir = folder.join("data");
    settings.auth_disabled = true;
    settings.metrics_port = 0;
    let shutdown = CancellationToken::new();
    let suite = Suite::start(settings, &ServiceKind::ALL, shutdown.clone())
        .await
        .unwrap_or_else(|error| panic!("the embedded suite did not start: {error}"));
    let ports = suite
        .addresses
        .iter()
        .map(|(service, address)| (*service, address.port()))
        .collect();

    let run = run(&blocks, &port_rewrites(&ports), &folder, &[]).await;

    // Every call answered (the streams ended by -max-time as the README says).
    for call in &run.calls {
        let expected =
            if call.method.ends_with("/Subscribe") || call.method.ends_with("/WatchTransitions") {
                68
            } else {
                0
            };
        assert_eq!(call.status, expected, "{}:\n{}", call.method, call.answer);
    }
    // The visitor's web touchpoint is on the timeline, and on Anna's after the login.
    let timelines = run.answers("ListTimeline");
    for timeline in &timelines {
        assert!(
            timeline["touchpoints"].as_array().is_some_and(|all| all
                .iter()
                .any(|t| t["touchpointId"] == "web-0001" && t["channel"] == "CHANNEL_WEB")),
            "the timeline shows the web touchpoint: {timeline}"
        );
    }
    assert_eq!(timelines.len(), 2);
    // The retry of a touchpoint counted once.
    let recorded = run.answers("RecordTouchpoint");
    assert_eq!(recorded[2]["duplicate"], true, "{}", recorded[2]);
    // The app, by Anna's phone number, resumed the web's session with its cart.
    let resumed = run.answers("ResumeSession");
    let by_phone = resumed.last().unwrap();
    assert_ne!(
        by_phone["started"], true,
        "resumed, not started: {by_phone}"
    );
    assert_eq!(
        by_phone["session"]["cart"][0]["productOfferingId"], "phone-x",
        "{by_phone}"
    );
    assert_eq!(by_phone["session"]["currentStep"], "configure_plan");
    // The funnel counted Anna through all three steps.
    let funnel = run.answer("RunFunnel");
    let steps = funnel["steps"].as_array().expect("funnel steps");
    assert_eq!(steps.len(), 3, "{funnel}");
    assert_eq!(steps[2]["entered"], "1", "one customer bought: {funnel}");
    // Decide offered the retention offer, and the outcome was recorded.
    let decided = run.answer("Decide");
    assert_eq!(
        decided["actions"][0]["action"]["actionId"], "retention-10pct-24m",
        "{decided}"
    );
    let decision = run.answer("GetDecision");
    assert!(
        decision.to_string().contains("OUTCOME_TYPE_ACCEPTED"),
        "{decision}"
    );
    // The survey invitation was made, answered, and counted in the KPIs.
    assert_eq!(run.answer("InviteToSurvey")["invited"], true);
    let kpis = run.answers("GetKpis");
    assert_eq!(
        kpis[0]["rows"][0]["nps"]["count"], "1",
        "the week's NPS counts the answer: {}",
        kpis[0]
    );
    // The ticket was claimed and resolved; the detractor's follow-up answered.
    let claimed = run.answer("ClaimNextTicket");
    assert_eq!(claimed["ticket"]["externalId"], "TT-4711", "{claimed}");
    assert!(
        run.text_answer("UpdateTicket")
            .contains("status: TICKET_STATUS_RESOLVED"),
        "{}",
        run.text_answer("UpdateTicket")
    );
    // The ticket, resolved after an outbound call-back only, is resolved on
    // its first contact: FCR 100% of 1 over the last hour.
    let fcr = &kpis[kpis.len() - 1]["rows"][0]["fcr"];
    assert_eq!(fcr["value"].as_f64(), Some(100.0), "{fcr}");
    assert_eq!(fcr["count"], "1", "{fcr}");
    assert!(
        run.text_answer("UpdateFollowUpTask")
            .contains("status: \"answered\""),
        "{}",
        run.text_answer("UpdateFollowUpTask")
    );
    assert!(run.stdout.contains("cairn.profile.v1.ProfileService"));
    println!(
        "README walk-through: {} blocks, {} grpcurl calls, each as the README expects",
        blocks.len(),
        run.calls.len()
    );

    shutdown.cancel();
    suite.wait().await.unwrap();
    let _ = std::fs::remove_dir_all(folder);
}

/// A free port on 127.0.0.1 (the suite is another process here, so the test
/// cannot ask it for ephemeral ones).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

#[tokio::test]
async fn the_readme_production_like_trial_runs_on_postgres_and_redis_with_authentication() {
    let blocks = sh_blocks(&readme(), &[PRODUCTION_TRIAL]);
    let folder = working_folder(true);
    let database = TestDatabase::create().await;
    let redis_prefix = format!("cairn-readme:{}:", uuid::Uuid::new_v4().simple());
    let ports: BTreeMap<ServiceKind, u16> = ServiceKind::ALL
        .iter()
        .map(|service| (*service, free_port()))
        .collect();
    let text: String = blocks.iter().map(|block| block.text.as_str()).collect();
    for written in [README_DATABASE_URL, README_REDIS_URL, "127.0.0.1:50051"] {
        assert!(
            text.contains(written),
            "the production-like trial no longer writes {written}: change the test's rewrites with it"
        );
    }
    let mut rewrites = port_rewrites(&ports);
    rewrites.push((README_DATABASE_URL.into(), database.url.clone()));
    rewrites.push((README_REDIS_URL.into(), redis_url()));
    let environment = [
        (
            "CAIRN_PROFILE_PORT",
            ports[&ServiceKind::Profile].to_string(),
        ),
        (
            "CAIRN_JOURNEY_PORT",
            ports[&ServiceKind::Journey].to_string(),
        ),
        (
            "CAIRN_RECOMMENDATION_PORT",
            ports[&ServiceKind::Recommendation].to_string(),
        ),
        (
            "CAIRN_FEEDBACK_PORT",
            ports[&ServiceKind::Feedback].to_string(),
        ),
        ("CAIRN_REDIS_PREFIX", redis_prefix.clone()),
        ("CAIRN_METRICS_PORT", "0".into()),
    ];

    let run = run(&blocks, &rewrites, &folder, &environment).await;

    // Without a token UNAUTHENTICATED, without the scope PERMISSION_DENIED
    // (health checks answer UNAVAILABLE until the server listens).
    let refused: Vec<(&str, i32)> = run
        .calls
        .iter()
        .filter(|call| call.status != 0 && !call.method.ends_with("Health/Check"))
        .map(|call| (call.method.rsplit('/').next().unwrap_or(""), call.status))
        .collect();
    assert_eq!(
        refused,
        [("ListProfiles", 64 + 16), ("ListTimeline", 64 + 7)],
        "the refused calls"
    );
    // The customer's own token read her profile and recorded her touchpoint.
    let created = run.answer("CreateProfile");
    let eva = created["profile"]["profileId"]
        .as_str()
        .expect("a profile id");
    assert_eq!(run.answer("GetProfile")["profile"]["profileId"], eva);
    let recorded = run.answer("RecordTouchpoint");
    assert_eq!(recorded["touchpoint"]["profileId"], eva, "{recorded}");
    // The services ran on PostgreSQL: Eva's profile is a row of the test's database.
    use sea_orm::ConnectionTrait;
    let rows = database
        .connect()
        .await
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DatabaseBackend::Postgres,
            format!("SELECT 1 FROM profile_profiles WHERE id = '{eva}'"),
        ))
        .await
        .expect("the profile table");
    assert_eq!(rows.len(), 1, "Eva's profile is in PostgreSQL");
    println!(
        "README production-like trial: {} grpcurl calls (health checks included), refused as written: {}",
        run.calls.len(),
        refused.len()
    );

    database.drop_database().await;
    delete_redis_prefix(&redis_prefix).await;
    let _ = std::fs::remove_dir_all(folder);
}
