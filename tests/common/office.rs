//! A training office in a temporary directory, driven through the real binary: its
//! config, its CSV files, and a database (SQLite, or a PostgreSQL schema of its own).

use std::path::PathBuf;
use std::process::{Command, Output};

/// The office block every test config has.
pub const OFFICE: &str = "office:
  name: Opleidingscentrum
  from: \"Opleidingscentrum <opleidingen@example.nl>\"
  locale: nl
";

pub struct Office {
    pub dir: tempfile::TempDir,
    /// (url, schema) of a PostgreSQL office, dropped by `cleanup`.
    pg: Option<(String, String)>,
}

impl Office {
    /// The example rules and templates, SQLite, and `extra` config (office, mail, ...).
    pub fn new(extra: &str) -> Office {
        let dir = tempfile::tempdir().expect("dir");
        super::office_config(dir.path(), extra);
        Office { dir, pg: None }
    }

    /// The same office on its own PostgreSQL schema; `None` without REGISTRAR_TEST_POSTGRES_URL.
    pub async fn postgres(extra: &str) -> Option<Office> {
        let Ok(url) = std::env::var("REGISTRAR_TEST_POSTGRES_URL") else {
            eprintln!("skipping the PostgreSQL half: REGISTRAR_TEST_POSTGRES_URL is not set");
            return None;
        };
        let schema = super::unique("office");
        let admin = sqlx::PgPool::connect(&url).await.expect("connect");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&admin)
            .await
            .expect("schema");
        admin.close().await;
        let office = Office::new(extra);
        office.edit_config(
            "database: sqlite://test.db",
            &format!("database: {url}?options=-c%20search_path%3D{schema}"),
        );
        Some(Office {
            pg: Some((url, schema)),
            ..office
        })
    }

    pub async fn cleanup(self) {
        if let Some((url, schema)) = self.pg
            && let Ok(admin) = sqlx::PgPool::connect(&url).await
        {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                .execute(&admin)
                .await;
            admin.close().await;
        }
    }

    /// The office's database, opened as registrar opens it.
    pub async fn store(&self) -> registrar::store::Store {
        let config = registrar::config::Config::load(&self.config()).expect("config");
        registrar::store::Store::open(&config.database)
            .await
            .expect("database")
    }

    /// Rules of the test's own (in the office directory), with the repository's templates.
    pub fn own_rules_only(&self, rules: &str) {
        let r = self.dir.path().join("rules");
        std::fs::create_dir_all(&r).expect("rules");
        std::fs::write(r.join("rules.yaml"), rules).expect("rules");
        self.edit_config(
            &format!("rules: {}", super::repo().join("rules").display()),
            "rules: rules",
        );
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("config.yaml")
    }

    pub fn edit_config(&self, from: &str, to: &str) {
        let text = std::fs::read_to_string(self.config()).expect("config");
        assert!(text.contains(from), "config has no {from:?}");
        std::fs::write(self.config(), text.replace(from, to)).expect("config");
    }

    /// Rules and templates of the test's own, in the office directory.
    pub fn own_rules(&self, rules: &str, templates: &[(&str, &str)]) {
        let (r, t) = (
            self.dir.path().join("rules"),
            self.dir.path().join("templates"),
        );
        std::fs::create_dir_all(&r).expect("rules");
        std::fs::create_dir_all(&t).expect("templates");
        std::fs::write(r.join("rules.yaml"), rules).expect("rules");
        for (name, text) in templates {
            std::fs::write(t.join(name), text).expect("template");
        }
        let repo = super::repo();
        self.edit_config(
            &format!("rules: {}", repo.join("rules").display()),
            "rules: rules",
        );
        self.edit_config(
            &format!("templates: {}", repo.join("templates").display()),
            "templates: templates",
        );
    }

    /// The binary with this office's config (and `--now`, if given).
    pub fn command(&self, now: Option<&str>, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_registrar"));
        c.arg("--config").arg(self.config());
        if let Some(now) = now {
            c.args(["--now", now]);
        }
        c.args(args);
        c
    }

    /// Runs a command that must succeed.
    pub fn run(&self, now: &str, args: &[&str]) -> Output {
        let out = self.command(Some(now), args).output().expect("run");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    pub fn import(&self, now: &str, kind: &str, file: PathBuf) {
        self.run(now, &["import", kind, &file.to_string_lossy()]);
    }

    /// Imports every CSV file of examples/office.
    pub fn example(&self, now: &str) {
        let office = super::repo().join("examples/office");
        for kind in super::EXAMPLE_KINDS {
            self.import(now, kind, office.join(format!("{kind}.csv")));
        }
    }

    pub fn plan(&self, now: &str) -> Vec<serde_json::Value> {
        let out = self.run(now, &["plan", "--format", "json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("plan json");
        v.as_array().expect("array").clone()
    }

    pub fn deliveries(&self) -> Vec<serde_json::Value> {
        let out = self
            .command(None, &["deliveries", "--format", "json"])
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("deliveries json");
        v.as_array().expect("array").clone()
    }

    pub fn csv(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        p
    }
}
