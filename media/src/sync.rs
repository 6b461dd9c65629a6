//! Small synchronization helpers every service shares.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`, taking the data even if a thread panicked while holding it. Every
/// critical section in Floodlight is a single insert, remove or counter update, so the
/// data behind a poisoned lock is still consistent, and one panicking task must not
/// take every other user of the lock down with it.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
