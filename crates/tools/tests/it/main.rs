//! The SQL validator suite: many accepted and refused statements per dialect, injection
//! tricks included.

#![allow(clippy::unwrap_used)] // test helpers fail by panicking

mod connector;
mod connector_mysql;
mod http;
mod redteam;
mod redteam2;
mod redteam3;
mod roles;
mod sql_corpus;
mod sql_scoping;
mod sql_validator;
mod sql_write;
mod tidy;
