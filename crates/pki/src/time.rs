//! Conversions between `SystemTime` (what callers pass), `OffsetDateTime` (what rcgen writes) and
//! ASN.1 times (what x509-parser reads), all at whole-second precision, as in certificates.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;

use crate::error::PkiError;

/// Formats a time as RFC 3339 in UTC, to the second: `2026-11-27T10:00:00Z`.
pub fn fmt_time(t: SystemTime) -> String {
    match OffsetDateTime::from_unix_timestamp(unix_secs(t)) {
        Ok(dt) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            dt.year(),
            u8::from(dt.month()),
            dt.day(),
            dt.hour(),
            dt.minute(),
            dt.second()
        ),
        Err(_) => format!("{} seconds from the Unix epoch", unix_secs(t)),
    }
}

/// Seconds since the Unix epoch (negative before it), rounded towards the past.
pub(crate) fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => {
            let d = e.duration();
            let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            // -0.5 s is second -1, not second 0.
            if d.subsec_nanos() > 0 {
                secs.saturating_neg().saturating_sub(1)
            } else {
                secs.saturating_neg()
            }
        }
    }
}

/// The `SystemTime` at a whole number of seconds from the epoch.
pub(crate) fn from_unix_secs(secs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

/// Truncates a time to the whole second, as it will be written in a certificate.
pub(crate) fn truncate(t: SystemTime) -> SystemTime {
    from_unix_secs(unix_secs(t))
}

/// Converts to the type rcgen writes, refusing times a certificate cannot hold.
pub(crate) fn to_offset(t: SystemTime) -> Result<OffsetDateTime, PkiError> {
    let secs = unix_secs(t);
    let dt = OffsetDateTime::from_unix_timestamp(secs).map_err(|_| PkiError::InvalidValidity {
        reason: format!("time {secs}s from the Unix epoch is out of range"),
    })?;
    // X.509 times are UTCTime (1950–2049) or GeneralizedTime (4-digit years).
    if !(1950..=9999).contains(&dt.year()) {
        return Err(PkiError::InvalidValidity {
            reason: format!("{} is outside the years 1950–9999", fmt_time(t)),
        });
    }
    Ok(dt)
}

/// Converts an ASN.1 time from a parsed certificate.
pub(crate) fn from_asn1(t: x509_parser::time::ASN1Time) -> SystemTime {
    from_unix_secs(t.timestamp())
}

/// `now + d`, or a clear error when that does not fit.
pub(crate) fn add(now: SystemTime, d: Duration) -> Result<SystemTime, PkiError> {
    now.checked_add(d).ok_or_else(|| PkiError::InvalidValidity {
        reason: format!("{}s after {} is out of range", d.as_secs(), fmt_time(now)),
    })
}

/// `now - d`, or a clear error when that does not fit.
pub(crate) fn sub(now: SystemTime, d: Duration) -> Result<SystemTime, PkiError> {
    now.checked_sub(d).ok_or_else(|| PkiError::InvalidValidity {
        reason: format!("{}s before {} is out of range", d.as_secs(), fmt_time(now)),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339_utc_seconds() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_773_600); // 2026-11-27T10:00:00Z
        assert_eq!(fmt_time(t), "2026-11-27T10:00:00Z");
        assert_eq!(
            fmt_time(t + Duration::from_millis(999)),
            "2026-11-27T10:00:00Z"
        );
        assert_eq!(fmt_time(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            fmt_time(UNIX_EPOCH - Duration::from_secs(1)),
            "1969-12-31T23:59:59Z"
        );
    }

    #[test]
    fn unix_secs_rounds_towards_the_past() {
        assert_eq!(unix_secs(UNIX_EPOCH + Duration::from_millis(1500)), 1);
        assert_eq!(unix_secs(UNIX_EPOCH - Duration::from_millis(500)), -1);
        assert_eq!(unix_secs(UNIX_EPOCH - Duration::from_secs(2)), -2);
        assert_eq!(from_unix_secs(-2), UNIX_EPOCH - Duration::from_secs(2));
    }

    #[test]
    fn to_offset_refuses_years_certificates_cannot_hold() {
        assert!(to_offset(UNIX_EPOCH).is_ok());
        let far = UNIX_EPOCH + Duration::from_secs(400_000_000_000);
        let err = to_offset(far).unwrap_err();
        assert!(err.to_string().contains("out of range") || err.to_string().contains("9999"));
    }

    #[test]
    fn add_reports_overflow() {
        let err = add(SystemTime::now(), Duration::MAX).unwrap_err();
        assert!(err.to_string().contains("out of range"), "{err}");
    }
}
