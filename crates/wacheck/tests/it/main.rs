//! wacheck's integration tests, in one binary (linked once): each module is what its name
//! says, against real Postgres, Redis and S3 (s3s-fs) servers, isolated per test. `chaos::`
//! tests start private servers and run one at a time (`just chaos`); `load::` is `just load`.

mod common;

mod accounts;
mod blob;
mod budget;
mod chaos;
mod errors;
mod gateways;
mod lifecycle;
mod load;
mod pipeline;
mod security;
mod sync;
mod upgrade;
