//! Finding the OS error behind an aya error, to turn it into advice.

use std::error::Error;

/// The first `io::Error` errno in `err`'s source chain.
pub fn find(err: &(dyn Error + 'static)) -> Option<i32> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(code) = io.raw_os_error()
        {
            return Some(code);
        }
        cur = e.source();
    }
    None
}
