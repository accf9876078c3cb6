//! The tables `office_users` (the accounts of the office's pages: name, argon2id hash,
//! failed sign-ins) and `office_sessions` (signed-in browsers, known by the SHA-256 of
//! their cookie).
//!
//! Consistency: a failed sign-in counts up and locks in one `UPDATE` (no read-then-write:
//! parallel guesses each count); a session row is written once and only read or deleted.

use super::{Tx, on};
use chrono::{DateTime, Utc};

/// An account as a sign-in reads it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct User {
    pub name: String,
    pub password_hash: String,
    pub failures: i64,
    pub locked_until: Option<DateTime<Utc>>,
}

/// Creates an account; `false` if the name is taken.
pub async fn add_user(
    tx: &mut Tx,
    name: &str,
    hash: &str,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    on!(tx, c => sqlx::query(
        "INSERT INTO office_users (name, password_hash, failures, created_at, updated_at) VALUES ($1, $2, 0, $3, $3) \
         ON CONFLICT (name) DO NOTHING",
    ).bind(name).bind(hash).bind(now).execute(&mut **c).await.map(|r| r.rows_affected() == 1))
}

/// Sets a new password (and unlocks); signs the account out everywhere. `false` if unknown.
pub async fn set_password(
    tx: &mut Tx,
    name: &str,
    hash: &str,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let changed = on!(tx, c => sqlx::query(
        "UPDATE office_users SET password_hash = $1, failures = 0, locked_until = NULL, updated_at = $2 WHERE name = $3",
    ).bind(hash).bind(now).bind(name).execute(&mut **c).await.map(|r| r.rows_affected() == 1))?;
    on!(tx, c => sqlx::query("DELETE FROM office_sessions WHERE user_name = $1")
        .bind(name).execute(&mut **c).await.map(|_| ()))?;
    Ok(changed)
}

/// Deletes an account and its sessions; `false` if unknown.
pub async fn remove_user(tx: &mut Tx, name: &str) -> Result<bool, sqlx::Error> {
    on!(tx, c => sqlx::query("DELETE FROM office_sessions WHERE user_name = $1")
        .bind(name).execute(&mut **c).await.map(|_| ()))?;
    on!(tx, c => sqlx::query("DELETE FROM office_users WHERE name = $1")
        .bind(name).execute(&mut **c).await.map(|r| r.rows_affected() == 1))
}

/// The accounts, by name: (name, created, locked until).
pub async fn users(
    tx: &mut Tx,
) -> Result<Vec<(String, DateTime<Utc>, Option<DateTime<Utc>>)>, sqlx::Error> {
    on!(tx, c => sqlx::query_as("SELECT name, created_at, locked_until FROM office_users ORDER BY name")
        .fetch_all(&mut **c).await)
}

pub async fn user(tx: &mut Tx, name: &str) -> Result<Option<User>, sqlx::Error> {
    on!(tx, c => sqlx::query_as(
        "SELECT name, password_hash, failures, locked_until FROM office_users WHERE name = $1",
    ).bind(name).fetch_optional(&mut **c).await)
}

/// Counts a failed sign-in; the `limit`th in a row locks the account until `lock_until`.
/// Returns whether the account is now locked.
pub async fn record_failure(
    tx: &mut Tx,
    name: &str,
    limit: i64,
    lock_until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let locked: Option<Option<DateTime<Utc>>> = on!(tx, c => sqlx::query_scalar(
        "UPDATE office_users SET failures = failures + 1, updated_at = $1, \
         locked_until = CASE WHEN failures + 1 >= $2 THEN $3 ELSE locked_until END \
         WHERE name = $4 RETURNING locked_until",
    ).bind(now).bind(limit).bind(lock_until).bind(name).fetch_optional(&mut **c).await)?;
    Ok(locked.flatten().is_some_and(|t| t > now))
}

/// A successful sign-in: the count of failures starts again.
pub async fn record_success(
    tx: &mut Tx,
    name: &str,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    on!(tx, c => sqlx::query(
        "UPDATE office_users SET failures = 0, locked_until = NULL, updated_at = $1 WHERE name = $2",
    ).bind(now).bind(name).execute(&mut **c).await.map(|_| ()))
}

pub async fn add_session(
    tx: &mut Tx,
    token_hash: &str,
    user: &str,
    csrf: &str,
    now: DateTime<Utc>,
    expires: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    // Expired sessions go when a new one comes.
    on!(tx, c => sqlx::query("DELETE FROM office_sessions WHERE expires_at <= $1")
        .bind(now).execute(&mut **c).await.map(|_| ()))?;
    on!(tx, c => sqlx::query(
        "INSERT INTO office_sessions (token_hash, user_name, csrf, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
    ).bind(token_hash).bind(user).bind(csrf).bind(now).bind(expires).execute(&mut **c).await.map(|_| ()))
}

/// The account and CSRF token of a session that has not expired.
pub async fn session(
    tx: &mut Tx,
    token_hash: &str,
    now: DateTime<Utc>,
) -> Result<Option<(String, String)>, sqlx::Error> {
    on!(tx, c => sqlx::query_as(
        "SELECT user_name, csrf FROM office_sessions WHERE token_hash = $1 AND expires_at > $2",
    ).bind(token_hash).bind(now).fetch_optional(&mut **c).await)
}

pub async fn remove_session(tx: &mut Tx, token_hash: &str) -> Result<(), sqlx::Error> {
    on!(tx, c => sqlx::query("DELETE FROM office_sessions WHERE token_hash = $1")
        .bind(token_hash).execute(&mut **c).await.map(|_| ()))
}
