//! The PostgreSQL backend against a real server: the conformance suite, crashes of the
//! client and of the server, connections cut by the server, several processes, leases.
//!
//! The tests start a throwaway cluster when `initdb` and `pg_ctl` are installed, or
//! use `PERSISTER_POSTGRES_URL`; without either they print why and pass, unless
//! `PERSISTER_REQUIRE_POSTGRES=1`. `PERSISTER_PG_KILLS`, `PERSISTER_PG_CRASHES` and
//! `PERSISTER_PG_STEPS` run the kill, server-crash and model tests longer.

mod child;
mod cluster;
mod conformance;
mod crash;
mod errors;
mod lease;
mod model;
mod processes;
mod round_trips;
