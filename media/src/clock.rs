//! Wall-clock time as the services read it. Cores never call this: they take time as an
//! input (a DTS, an arrival stamp, a `now` argument), so tests drive them with any clock.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch: the time base of PROGRAM-DATE-TIME, of frame arrival
/// stamps and of session expiry. A clock set before 1970 reads 0.
pub fn unix_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_current_century() {
        let now = unix_millis();
        // 2020-01-01 .. 2100-01-01
        assert!(
            (1_577_836_800_000..4_102_444_800_000).contains(&now),
            "{now}"
        );
    }
}
