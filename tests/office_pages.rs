//! The office's pages in a real browser: Debian's Chromium driven by Playwright
//! (tests/office-pages/run.mjs), against `serve` with the example office. The script signs
//! in, finds the failed delivery of the participant without an email and retries it
//! (still failed, a new attempt listed), approves a manual message and sees it sent, reads
//! why a participant's certificate waits, checks that no page shows anything without a
//! session and that a form without its CSRF token is refused, and takes screenshots of
//! every page in English and Dutch (target/office-screenshots/).

mod common;

use common::daemon::{Running, http_config};
use common::office::{OFFICE, Office};
use std::process::Command;

const NOW: &str = "2026-11-27 12:00";
/// Two days on: the survey invitations (the day after attendance was marked) are due.
const TICK: &str = "2026-11-29 12:00";
const PASSWORD: &str = "correct horse battery staple";

/// The example office with `result-failed` made manual (an office that checks a failed
/// result before it goes out), imported and ticked at NOW: Siem (no email address) has a
/// failed survey invitation, Daan's and Zoë's result notices await approval.
fn example_office() -> Office {
    let office = Office::new(&format!(
        "{OFFICE}mail:\n  transport: file\n  outbox: outbox\n{}",
        http_config()
    ));
    let rules = office.dir.path().join("rules");
    common::copy_dir(&common::repo().join("rules"), &rules);
    let actions = std::fs::read_to_string(rules.join("actions.yaml")).expect("rules");
    assert!(actions.contains("id: result-failed\n"));
    std::fs::write(
        rules.join("actions.yaml"),
        actions.replace(
            "id: result-failed\n",
            "id: result-failed\nexecution: manual\n",
        ),
    )
    .expect("rules");
    office.edit_config(
        &format!("rules: {}", common::repo().join("rules").display()),
        "rules: rules",
    );
    office.example(NOW);
    office.run(TICK, &["tick"]);
    add_account(&office);
    office
}

#[test]
fn office_pages_in_chromium_sign_in_retry_approve_and_say_why_in_en_and_nl() {
    if !common::tool("node", "apt-get install nodejs npm")
        || !common::tool("chromium", "apt-get install chromium")
    {
        return;
    }
    let script = common::repo().join("tests/office-pages");
    if !script.join("node_modules").exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "tests/office-pages has no node_modules: run `npm ci --prefix tests/office-pages`"
        );
        eprintln!("skipping: run `npm ci --prefix tests/office-pages` for Playwright");
        return;
    }
    let office = example_office();
    // The account's password is stored only as its argon2id hash.
    let db = std::fs::read(office.dir.path().join("test.db")).expect("db");
    assert!(!db.windows(PASSWORD.len()).any(|w| w == PASSWORD.as_bytes()));

    let running = Running::start(&office);
    let shots = common::repo().join("target/office-screenshots");
    std::fs::create_dir_all(&shots).expect("shots");
    let out = Command::new("node")
        .arg(script.join("run.mjs"))
        .env("BASE", format!("http://127.0.0.1:{}", running.port))
        .env("ACCOUNT", "anna")
        .env("PASSWORD", PASSWORD)
        .env("SHOTS", &shots)
        .env("CHROMIUM", "chromium")
        .output()
        .expect("node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    running.stop();
    assert!(
        out.status.success(),
        "the browser test failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
    // The certificate PDF the pages served, read by an oracle we did not write.
    if common::tool("pdftotext", "apt-get install poppler-utils") {
        let text = Command::new("pdftotext")
            .arg(shots.join("certificate-jan.pdf"))
            .arg("-")
            .output()
            .expect("pdftotext");
        let text = String::from_utf8_lossy(&text.stdout);
        assert!(text.contains("Jan Jansen"), "{text}");
    }

    // What the pages did is what the CLI sees: the approved notice went out, Siem's
    // delivery failed again, and the history names the account.
    let deliveries = office.deliveries();
    let sent_notice = deliveries
        .iter()
        .any(|d| d["rule"] == "result-failed" && d["state"] == "sent");
    assert!(sent_notice, "{deliveries:#?}");
    let siem: Vec<_> = deliveries
        .iter()
        .filter(|d| d["person"] == "siem")
        .collect();
    assert!(
        !siem.is_empty() && siem.iter().all(|d| d["state"] == "failed"),
        "{siem:#?}"
    );
    // D10: the history names the account that retried and approved.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let store = office.store().await;
        let siem = common::read(&store, async |tx| {
            registrar::store::history::of_participant(tx, "bhv-2026-10", "siem").await
        })
        .await;
        assert!(
            siem.iter()
                .any(|h| h.source == "retry" && h.actor == "anna"),
            "{siem:#?}"
        );
        let mut approved = Vec::new();
        for person in ["daan", "zoe"] {
            approved.extend(
                common::read(&store, async |tx| {
                    registrar::store::history::of_participant(tx, "ehbo-2026-03", person).await
                })
                .await
                .into_iter()
                .filter(|h| h.change == "approve"),
            );
        }
        assert!(
            !approved.is_empty() && approved.iter().all(|h| h.actor == "anna"),
            "{approved:#?}"
        );
        store.close().await;
    });
}

/// Adds the account `anna` through the CLI.
fn add_account(office: &Office) {
    let mut add = office
        .command(None, &["office-user", "add", "anna", "--password-stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("office-user");
    {
        use std::io::Write;
        let mut stdin = add.stdin.take().expect("stdin");
        writeln!(stdin, "{PASSWORD}").expect("password");
    }
    let out = add.wait_with_output().expect("office-user");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One sign-in as a browser does it: the form (its token and cookie), then the post.
fn sign_in(port: u16, password: &str) -> common::http::Answer {
    let form = common::http::request(port, "GET", "/office/sign-in", &[], b"");
    let token = form
        .body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("token")
        .to_string();
    let cookie = format!("registrar_office_signin={token}");
    let body = format!(
        "csrf={token}&name=anna&password={}",
        password.replace(' ', "+")
    );
    common::http::request(
        port,
        "POST",
        "/office/sign-in",
        &[
            ("Cookie", &cookie),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        body.as_bytes(),
    )
}

fn failures(office: &Office) -> (i64, bool) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let store = office.store().await;
        let u = common::read(&store, async |tx| {
            registrar::store::office::user(tx, "anna").await
        })
        .await
        .expect("account");
        store.close().await;
        (
            u.failures,
            u.locked_until.is_some_and(|t| t > chrono::Utc::now()),
        )
    })
}

/// Wrong passwords sent at once are each counted (one `UPDATE` decides, no lost update):
/// four leave the account open, five more lock it, and then even the right password is
/// refused until the lock ends.
fn lockout_counts_every_parallel_failure(office: &Office) {
    add_account(office);
    let running = Running::start(office);
    let port = running.port;
    let wrong = |n: usize| {
        let jobs: Vec<Box<dyn FnOnce() -> u16 + Send>> = (0..n)
            .map(|_| Box::new(move || sign_in(port, "not the password").status) as Box<_>)
            .collect();
        common::daemon::in_parallel(n, jobs)
    };
    let first = wrong(4);
    assert!(first.iter().all(|s| *s == 401), "{first:?}");
    assert_eq!(failures(office), (4, false), "four failures, each counted");
    let ok = sign_in(port, PASSWORD);
    assert_eq!(
        ok.status, 303,
        "the right password still works: {}",
        ok.body
    );
    assert!(ok.headers.contains("registrar_office="), "{}", ok.headers);
    assert_eq!(failures(office).0, 0, "a sign-in starts the count again");
    let second = wrong(5);
    assert!(second.iter().all(|s| *s == 401 || *s == 429), "{second:?}");
    assert!(second.contains(&429), "the fifth failure locks: {second:?}");
    let (count, locked) = failures(office);
    assert!(locked && count >= 5, "locked after five failures ({count})");
    let refused = sign_in(port, PASSWORD);
    assert_eq!(refused.status, 429, "{}", refused.body);
    // In the office's language (nl): "geblokkeerd tot ..." (locked until).
    assert!(refused.body.contains("geblokkeerd tot"), "{}", refused.body);
    assert!(!refused.headers.contains("registrar_office="));
    running.stop();
}

#[test]
fn five_wrong_passwords_in_parallel_lock_the_account_on_sqlite() {
    let office = Office::new(&format!("{OFFICE}{}", http_config()));
    lockout_counts_every_parallel_failure(&office);
}

#[test]
fn five_wrong_passwords_in_parallel_lock_the_account_on_postgres() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let Some(office) = rt.block_on(Office::postgres(&format!("{OFFICE}{}", http_config()))) else {
        return;
    };
    lockout_counts_every_parallel_failure(&office);
    rt.block_on(office.cleanup());
}

#[test]
fn office_user_refuses_a_bad_name_a_short_password_and_a_taken_name_and_changes_nothing() {
    let office = Office::new(OFFICE);
    let run = |args: &[&str], password: &str| {
        let mut c = office
            .command(None, args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("office-user");
        {
            use std::io::Write;
            let mut stdin = c.stdin.take().expect("stdin");
            writeln!(stdin, "{password}").expect("password");
        }
        c.wait_with_output().expect("office-user")
    };
    let bad = run(
        &["office-user", "add", "an na", "--password-stdin"],
        PASSWORD,
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not an account name"));
    let short = run(&["office-user", "add", "anna", "--password-stdin"], "short");
    assert!(!short.status.success());
    let said = String::from_utf8_lossy(&short.stderr);
    assert!(
        said.contains("too short") && !said.contains("short\n\n"),
        "{said}"
    );
    let list = run(&["office-user", "list"], "");
    assert!(String::from_utf8_lossy(&list.stdout).contains("no accounts"));
    assert!(
        run(
            &["office-user", "add", "anna", "--password-stdin"],
            PASSWORD
        )
        .status
        .success()
    );
    let again = run(
        &["office-user", "add", "anna", "--password-stdin"],
        "another password 1",
    );
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already"));
    let list = run(&["office-user", "list"], "");
    assert!(String::from_utf8_lossy(&list.stdout).starts_with("anna  added"));
    assert!(
        run(
            &["office-user", "passwd", "anna", "--password-stdin"],
            "a new password 22"
        )
        .status
        .success()
    );
    assert!(
        !run(
            &["office-user", "passwd", "bob", "--password-stdin"],
            PASSWORD
        )
        .status
        .success()
    );
    assert!(run(&["office-user", "remove", "anna"], "").status.success());
    let list = run(&["office-user", "list"], "");
    assert!(String::from_utf8_lossy(&list.stdout).contains("no accounts"));
}
