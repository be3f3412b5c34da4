//! The PostgreSQL backend against a real server: the conformance suite, crashes of the
//! client and of the server, connections cut by the server, several processes, leases,
//! and failovers from a primary to its standby.
//!
//! The tests start a throwaway cluster when `initdb` and `pg_ctl` are installed, or
//! use `PERSISTER_POSTGRES_URL`; without either they print why and pass, unless
//! `PERSISTER_REQUIRE_POSTGRES=1`. `PERSISTER_PG_KILLS`, `PERSISTER_PG_CRASHES`,
//! `PERSISTER_PG_STEPS`, `PERSISTER_PG_FAILOVERS` (synchronous standby, default 20) and
//! `PERSISTER_PG_ASYNC_FAILOVERS` (default 5) run the kill, server-crash, model and
//! failover tests longer.

mod child;
mod cluster;
mod conformance;
mod crash;
mod errors;
mod failover;
mod findings;
mod format;
mod group;
mod lease;
mod model;
mod processes;
mod relocate;
mod round_trips;
mod synchronous;
