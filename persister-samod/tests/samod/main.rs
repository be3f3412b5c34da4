//! persister-samod's tests: the acceptance suite on every backend, samod repos end to
//! end, a kill test, damaged stores and failing disks.

mod acceptance;
mod damage;
mod faults;
mod kill;
mod repos;
mod support;
