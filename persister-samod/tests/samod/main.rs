//! persister-samod's tests: the acceptance suite on every backend, samod repos end to
//! end, a kill test, damaged stores and failing disks, random operations against a
//! map, leases on PostgreSQL, and a document slot shared with other programs.

mod acceptance;
mod damage;
mod faults;
mod kill;
mod leases;
mod model;
mod repos;
mod slot;
mod support;
