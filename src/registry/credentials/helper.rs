//! Running a Docker credential helper: `docker-credential-NAME get`, with
//! the server URL on standard input and `{"ServerURL", "Username",
//! "Secret"}` on standard output (the protocol of
//! docker/docker-credential-helpers). A `Username` of `<token>` marks the
//! secret as an identity token; "credentials not found" with a failure
//! status means the helper holds none.
//!
//! A helper may wait for an unlock, a prompt or the network; it gets a
//! bounded time, runs in a process group of its own, and that whole group
//! is killed when the time is up, so nothing it started outlives the
//! lookup. What a helper prints is never logged, and its failure message
//! is withheld when it looks like credentials.

use std::io::{Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::{BasicAuth, Credential, CredentialError, CredentialHelper};

/// The user name by which a helper marks its secret as an identity token.
const TOKEN_USERNAME: &str = "<token>";
/// What a helper prints, with a failure status, when it holds nothing.
const NOT_FOUND: &str = "credentials not found";
/// A helper's output beyond this is not read.
const MAX_OUTPUT_BYTES: u64 = 1024 * 1024;
/// A helper's failure message beyond this is cut short.
const MAX_MESSAGE_CHARS: usize = 500;

/// A helper's answer; deliberately without `Debug`.
#[derive(Deserialize)]
struct Answer {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// Why a helper's output gave no credentials.
#[derive(Debug)]
enum Refusal {
    /// It failed, with this message.
    Failed(String),
    /// It succeeded, but printed no credentials JSON.
    Unreadable(serde_json::Error),
}

/// What a finished helper printed.
struct Output {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// Asks `helper` for the credentials of `server_url` (spelled as the
/// Docker client spells it), giving it `timeout` to answer.
pub(super) fn get(
    helper: &CredentialHelper,
    registry: &str,
    server_url: &str,
    timeout: Duration,
) -> Result<Option<Credential>, CredentialError> {
    tracing::debug!(
        registry,
        "asking the credential helper `{}`",
        helper.program
    );
    let output = run(helper, registry, server_url, timeout)?;
    let answer = interpret(output.status.success(), &output.stdout, &output.stderr);
    answer.map_err(|refusal| match refusal {
        Refusal::Failed(message) => CredentialError::HelperFailed {
            helper: Box::new(helper.clone()),
            registry: registry.to_string(),
            server_url: server_url.to_string(),
            status: output.status.to_string(),
            message,
        },
        Refusal::Unreadable(source) => CredentialError::HelperAnswer {
            helper: Box::new(helper.clone()),
            registry: registry.to_string(),
            source: source.into(),
        },
    })
}

/// Runs `helper get`, feeding it `server_url`, and collects what it
/// prints; kills it and everything it started when `timeout` passes.
fn run(
    helper: &CredentialHelper,
    registry: &str,
    server_url: &str,
    timeout: Duration,
) -> Result<Output, CredentialError> {
    use std::os::unix::process::CommandExt as _;

    let deadline = Instant::now() + timeout;
    let mut command = Command::new(&helper.program);
    command
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = spawn(&mut command).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => CredentialError::HelperMissing {
            helper: Box::new(helper.clone()),
            registry: registry.to_string(),
        },
        _ => CredentialError::HelperStart {
            helper: Box::new(helper.clone()),
            registry: registry.to_string(),
            source: source.into(),
        },
    })?;

    // The URL fits in a pipe's buffer, so this never waits on the helper;
    // a helper that exits without reading it closes the pipe, which is
    // its own business.
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(server_url.as_bytes());
    }
    let outputs = read_in_background(&mut child);

    let timed_out = || CredentialError::HelperTimedOut {
        helper: Box::new(helper.clone()),
        registry: registry.to_string(),
        timeout,
    };
    let Some(status) = wait_until(&mut child, deadline) else {
        kill_group(&mut child);
        return Err(timed_out());
    };
    let mut printed = [Vec::new(), Vec::new()];
    for _ in 0..printed.len() {
        // Something the helper started may hold its output open.
        let left = deadline.saturating_duration_since(Instant::now());
        let (index, bytes) = outputs.recv_timeout(left).map_err(|_| timed_out())?;
        printed[index] = bytes;
    }
    let [stdout, stderr] = printed;
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// Reads the child's stdout (0) and stderr (1) to their ends on threads
/// of their own, so that neither pipe fills up, and sends each whole.
fn read_in_background(child: &mut Child) -> mpsc::Receiver<(usize, Vec<u8>)> {
    let (sender, outputs) = mpsc::channel();
    let readers: [Option<Box<dyn Read + Send>>; 2] = [
        child.stdout.take().map(|r| Box::new(r) as _),
        child.stderr.take().map(|r| Box::new(r) as _),
    ];
    for (index, reader) in readers.into_iter().enumerate() {
        let sender = sender.clone();
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(reader) = reader {
                let _ = reader.take(MAX_OUTPUT_BYTES).read_to_end(&mut bytes);
            }
            let _ = sender.send((index, bytes));
        });
    }
    outputs
}

/// Starts the helper; a helper that is being replaced, or was written a
/// moment ago while another thread forked, is briefly busy (`ETXTBSY`).
fn spawn(command: &mut Command) -> std::io::Result<Child> {
    let mut attempts = 0;
    loop {
        match command.spawn() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && attempts < 5 => {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            result => return result,
        }
    }
}

/// Waits for `child` to exit until `deadline`; `None` if it has not.
fn wait_until(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    let mut pause = Duration::from_millis(1);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => {}
            // Cannot happen for a child of ours; treat it as a hang.
            Err(_) => return None,
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Kills the helper's process group, then reaps the helper.
fn kill_group(child: &mut Child) {
    tracing::debug!("killing credential helper process group {}", child.id());
    let group = i32::try_from(child.id()).ok().filter(|pid| *pid > 0);
    // SAFETY: kill(2) reads no memory of ours; it takes plain integers.
    // The helper leads its own group (`process_group(0)`) and has not been
    // reaped yet (`try_wait` saw it running), so its pid still names that
    // group and no other.
    let killed = group.is_some_and(|pid| unsafe { libc::kill(-pid, libc::SIGKILL) } == 0);
    if !killed {
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// Reads a finished helper's output as the Docker client does.
fn interpret(success: bool, stdout: &[u8], stderr: &[u8]) -> Result<Option<Credential>, Refusal> {
    let stdout_text = String::from_utf8_lossy(stdout);
    let stderr_text = String::from_utf8_lossy(stderr);
    if !success {
        let says_not_found = [&stdout_text, &stderr_text]
            .iter()
            .any(|text| text.to_ascii_lowercase().contains(NOT_FOUND));
        if says_not_found {
            return Ok(None);
        }
        return Err(Refusal::Failed(failure_message(
            stdout,
            &stdout_text,
            &stderr_text,
        )));
    }
    let answer: Answer = serde_json::from_slice(stdout).map_err(Refusal::Unreadable)?;
    // Some helpers (`pass` 0.6) answer an unknown server with empty
    // fields and success.
    if answer.secret.is_empty() && answer.username.is_empty() {
        return Ok(None);
    }
    if answer.username == TOKEN_USERNAME {
        return Ok((!answer.secret.is_empty()).then_some(Credential::IdentityToken(answer.secret)));
    }
    Ok(Some(Credential::Basic(BasicAuth {
        username: answer.username,
        password: answer.secret,
    })))
}

/// Picks the words a failed helper left, never credentials it printed.
fn failure_message(stdout: &[u8], stdout_text: &str, stderr_text: &str) -> String {
    if serde_json::from_slice::<Answer>(stdout).is_ok() {
        return "it printed credentials (withheld here) but failed".to_string();
    }
    let text = [stdout_text.trim(), stderr_text.trim()]
        .into_iter()
        .find(|text| !text.is_empty());
    let Some(text) = text else {
        return "it printed nothing".to_string();
    };
    let mut message: String = text.chars().take(MAX_MESSAGE_CHARS).collect();
    if message.len() < text.len() {
        message.push('…');
    }
    message
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::super::HelperSetting;
    use super::*;

    #[test]
    fn interprets_answers_as_the_docker_client_does() {
        let basic = |username: &str, password: &str| {
            Ok(Some(Credential::Basic(BasicAuth {
                username: username.into(),
                password: password.into(),
            })))
        };
        // Success, stdout, stderr, and the credential or failure message.
        type Case = (
            bool,
            &'static str,
            &'static str,
            Result<Option<Credential>, &'static str>,
        );
        let cases: [Case; 9] = [
            (
                true,
                r#"{"ServerURL":"r.example","Username":"bob","Secret":"pw"}"#,
                "",
                basic("bob", "pw"),
            ),
            (
                true,
                "{\"Username\":\"bob\",\"Secret\":\"pw\",\"Extra\":1}\n",
                "",
                basic("bob", "pw"),
            ),
            (
                true,
                r#"{"ServerURL":"r","Username":"<token>","Secret":"refresh-1"}"#,
                "",
                Ok(Some(Credential::IdentityToken("refresh-1".into()))),
            ),
            (
                true,
                r#"{"ServerURL":"r","Username":"","Secret":""}"#,
                "",
                Ok(None),
            ),
            (
                false,
                "credentials not found in native keychain\n",
                "",
                Ok(None),
            ),
            (false, "", "Credentials not found", Ok(None)),
            (false, "", "vault is sealed\n", Err("vault is sealed")),
            (
                false,
                r#"{"Username":"bob","Secret":"pw-leak"}"#,
                "",
                Err("it printed credentials (withheld here) but failed"),
            ),
            (false, "  \n", "", Err("it printed nothing")),
        ];
        for (success, stdout, stderr, expected) in cases {
            let found = interpret(success, stdout.as_bytes(), stderr.as_bytes());
            match (found, expected) {
                (Ok(found), Ok(expected)) => assert_eq!(found, expected, "{stdout}"),
                (Err(Refusal::Failed(found)), Err(expected)) => assert_eq!(found, expected),
                (found, expected) => panic!("{stdout}: {found:?}, expected {expected:?}"),
            }
        }
        assert!(matches!(
            interpret(true, b"not json", b""),
            Err(Refusal::Unreadable(_))
        ));
    }

    #[test]
    fn cuts_long_failure_messages_short() {
        let long = "x".repeat(2000);
        let message = failure_message(b"", &long, "");
        assert_eq!(message.chars().count(), MAX_MESSAGE_CHARS + 1);
    }

    /// Writes a shell script as a helper: a test double of a real helper,
    /// for the ways a helper can misbehave.
    fn script(dir: &Path, body: &str) -> CredentialHelper {
        use std::os::unix::fs::PermissionsExt as _;
        let path = dir.join("docker-credential-unit");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        CredentialHelper {
            program: path.display().to_string(),
            setting: HelperSetting::CredsStore,
            config: PathBuf::from("config.json"),
        }
    }

    #[test]
    fn sends_the_server_url_and_reads_the_answer() {
        let dir = tempfile::tempdir().unwrap();
        let helper = script(
            dir.path(),
            r#"[ "$1" = get ] || exit 3
read -r url || true
printf '{"ServerURL":"%s","Username":"%s","Secret":"pw"}' "$url" "$url""#,
        );
        let found = get(
            &helper,
            "docker.io",
            "https://index.docker.io/v1/",
            Duration::from_secs(20),
        );
        let expected = Credential::Basic(BasicAuth {
            username: "https://index.docker.io/v1/".into(),
            password: "pw".into(),
        });
        assert_eq!(found.unwrap(), Some(expected));
    }

    #[test]
    fn kills_a_helper_that_hangs_with_everything_it_started() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("still-running");
        let helper = script(
            dir.path(),
            &format!("(sleep 2; touch '{}') &\nsleep 600", marker.display()),
        );
        let error = get(
            &helper,
            "r.example",
            "r.example",
            Duration::from_millis(300),
        )
        .unwrap_err();
        assert!(
            matches!(error, CredentialError::HelperTimedOut { .. }),
            "{error}"
        );
        std::thread::sleep(Duration::from_millis(2500));
        assert!(!marker.exists(), "a process the helper started survived");
    }

    #[test]
    fn names_the_helper_when_it_fails_or_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let helper = script(dir.path(), "echo 'vault is sealed' >&2; exit 1");
        let error = get(&helper, "r.example", "r.example", Duration::from_secs(20)).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("docker-credential-unit"), "{message}");
        assert!(message.contains("vault is sealed"), "{message}");

        let missing = CredentialHelper {
            program: "docker-credential-lkcache-absent".into(),
            ..helper
        };
        let error = get(&missing, "r.example", "r.example", Duration::from_secs(20)).unwrap_err();
        assert!(
            matches!(error, CredentialError::HelperMissing { .. }),
            "{error}"
        );
    }
}
