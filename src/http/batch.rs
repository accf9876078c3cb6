//! Group commit for single attendance marks: marks that arrive while the previous
//! transaction runs are applied together in the next one (SQLite has one writer, and one
//! transaction per mark would cap the rate at the cost of a commit). Each request still
//! gets its own answer: a refused mark refuses only itself.

use super::ApiState;
use super::errors::ApiError;
use crate::change::{Applied, Work, WriteError};
use crate::import::apply_rows;
use crate::import::kinds::Row;
use tokio::sync::{mpsc, oneshot};

/// Marks applied per transaction at most.
const MAX_BATCH: usize = 256;

pub type Reply = oneshot::Sender<Result<Applied, ApiError>>;

/// The queue the mark handler sends to; the writer task runs until every sender is gone.
pub fn start(state: ApiState) -> mpsc::Sender<(Row, Reply)> {
    let (tx, mut rx) = mpsc::channel::<(Row, Reply)>(4096);
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(item) => batch.push(item),
                    Err(_) => break,
                }
            }
            apply_batch(&state, batch).await;
        }
    });
    tx
}

async fn apply_batch(state: &ApiState, batch: Vec<(Row, Reply)>) {
    let (rows, replies): (Vec<Row>, Vec<Reply>) = batch.into_iter().unzip();
    let rules = state.rules();
    let rows: Vec<(u64, Row)> = rows
        .into_iter()
        .enumerate()
        .map(|(i, r)| (i as u64, r))
        .collect();
    let now = chrono::Utc::now();
    let result: Result<Vec<Result<Applied, ApiError>>, sqlx::Error> =
        crate::store::transact!(state.store, |tx| {
            let mut work = Work::new(&rules, state.config.timezone, now, "api", "api attendance");
            let outcomes = apply_rows(&mut work, tx, rows.clone()).await?;
            work.finish(tx).await?;
            Ok(outcomes
                .into_iter()
                .map(|(_, o)| match o {
                    Ok(a) => Ok(a),
                    Err(WriteError::Sql(e)) => Err(e.into()),
                    Err(e) => Err(e.into()),
                })
                .collect())
        });
    match result {
        Ok(answers) => {
            state.wake.notify_one();
            for (reply, answer) in replies.into_iter().zip(answers) {
                let _ = reply.send(answer);
            }
        }
        Err(e) => {
            tracing::error!("database error applying attendance marks: {e}");
            for reply in replies {
                let _ = reply.send(Err(ApiError::new(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    "database_unavailable",
                    "the database could not complete the request; try again",
                )));
            }
        }
    }
}
