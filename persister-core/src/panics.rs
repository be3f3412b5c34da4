//! Panics of the libraries a crate builds on, turned into errors: automerge, yrs and
//! sled enforce some of their checks on damaged or hostile data by panicking.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// The message a panic carried (its `&str` or `String` payload), or `"no message"`.
pub fn panic_message(panic: &(dyn Any + Send)) -> &str {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s
    } else {
        "no message"
    }
}

/// Runs `f`, turning a panic into `"LIBRARY panicked: MESSAGE"`.
///
/// ```
/// let caught = persister_core::catch_panic("a library", || -> u8 { panic!("bad input") });
/// assert_eq!(caught, Err("a library panicked: bad input".to_string()));
/// ```
pub fn catch_panic<T>(library: &str, f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f))
        .map_err(|panic| format!("{library} panicked: {}", panic_message(&*panic)))
}
