//! [`crate::request`] for synchronous code (the xtask, black-box tests): each call runs on
//! a current-thread tokio runtime of its own.

use crate::{Error, Request, Response};

/// Sends `req` and reads the whole answer, blocking the calling thread; see
/// [`crate::request`]. Called from inside a tokio runtime, it runs on a thread of its
/// own, since a runtime cannot block on another.
pub fn request(req: Request) -> Result<Response, Error> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return std::thread::scope(|s| {
            s.spawn(|| run(req))
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        });
    }
    run(req)
}

fn run(req: Request) -> Result<Response, Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    runtime.block_on(crate::request(req))
}

impl Request {
    /// [`request`]: this request, sent from synchronous code.
    pub fn send_blocking(self) -> Result<Response, Error> {
        request(self)
    }
}
