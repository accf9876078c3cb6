//! registrar: keeps the state of course participants and sends each of them, exactly
//! once, the email that is due. This crate is the whole application; `main.rs` only
//! calls [`cli::main`].

#![forbid(unsafe_code)]

pub mod change;
pub mod cli;
pub mod config;
pub mod credential;
pub mod daemon;
pub mod delivery;
pub mod domain;
pub mod engine;
pub mod http;
pub mod import;
pub mod lang;
pub mod mail;
pub mod office;
pub mod pdf;
pub mod render;
pub mod rules;
pub mod scheduler;
pub mod service;
pub mod status;
pub mod store;
pub mod suggest;
