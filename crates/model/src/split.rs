//! `split.smi-spec.io TrafficSplit` (v1alpha1, v1alpha2): weighted backends for an apex
//! Service, as used for canaries and by the failover controller.
//!
//! Weights are Kubernetes quantities in v1alpha1 (`"500m"`, `1`) and integers in v1alpha2
//! (`90`); both are read and kept in thousandths, as Linkerd's `dstOverrides` are, so `90`
//! becomes 90000 and `500m` becomes 500. Only ratios between backends matter.

use crate::error::Issues;
use crate::scalar;
use serde::Deserialize;
use std::collections::BTreeSet;

/// The largest weight (in whole units) accepted anywhere, as in the Gateway API.
pub const MAX_WEIGHT: u32 = 1_000_000;

/// The `spec` of a TrafficSplit.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct TrafficSplitSpec {
    /// The apex Service clients address (in the split's namespace).
    #[serde(deserialize_with = "scalar::text")]
    pub service: String,
    /// The backends and their weights.
    #[serde(default, deserialize_with = "scalar::list")]
    pub backends: Vec<SplitBackend>,
}

/// One backend of a TrafficSplit.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct SplitBackend {
    /// The backend Service (in the split's namespace).
    #[serde(deserialize_with = "scalar::text")]
    pub service: String,
    /// The weight in thousandths: `90` is 90000, `"500m"` is 500.
    #[serde(deserialize_with = "scalar::quantity_weight")]
    pub weight: u32,
}

/// Why a weight could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WeightError {
    /// Not a number or quantity.
    #[error("{value} is not a weight: expected a whole number like 90 or a quantity like 500m")]
    NotAWeight {
        /// The value as written (strings quoted).
        value: String,
    },
    /// A negative weight.
    #[error("{value:?} is not a weight: weights cannot be negative")]
    Negative {
        /// The value as written.
        value: String,
    },
    /// More than [`MAX_WEIGHT`].
    #[error("{value:?} is too large a weight: at most 1000000")]
    TooLarge {
        /// The value as written.
        value: String,
    },
}

/// Parses a weight written as a number (`90`, `0.5`) or a Kubernetes quantity (`500m`, `1k`),
/// in thousandths. Fractions of a thousandth round up, as Kubernetes' `MilliValue` does.
///
/// ```
/// use weft_model::parse_weight;
/// assert_eq!(parse_weight("90"), Ok(90_000));
/// assert_eq!(parse_weight("500m"), Ok(500));
/// assert!(parse_weight("ten").is_err());
/// ```
pub fn parse_weight(value: &str) -> Result<u32, WeightError> {
    let text = value.trim();
    let not_a_weight = || WeightError::NotAWeight {
        value: format!("{value:?}"),
    };
    if text.starts_with('-') {
        return Err(WeightError::Negative {
            value: value.to_string(),
        });
    }
    let text = text.strip_prefix('+').unwrap_or(text);
    let number_len = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(number_len);
    // Thousandths per unit of the suffix.
    let scale: u128 = match suffix {
        "m" => 1,
        "" => 1_000,
        "k" => 1_000_000,
        "Ki" => 1_024_000,
        "M" => 1_000_000_000,
        "Mi" => 1_048_576_000,
        _ => return Err(not_a_weight()),
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
        return Err(not_a_weight());
    }
    let too_large = || WeightError::TooLarge {
        value: value.to_string(),
    };
    if whole.len() > 20 {
        return Err(too_large());
    }
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| not_a_weight())?
    };
    let fraction = &fraction[..fraction.len().min(20)];
    let mut milli = whole * scale;
    if !fraction.is_empty() {
        let digits: u128 = fraction.parse().map_err(|_| not_a_weight())?;
        let exponent = u32::try_from(fraction.len()).map_err(|_| not_a_weight())?;
        let denominator = 10u128.pow(exponent);
        milli += (digits * scale).div_ceil(denominator);
    }
    if milli > u128::from(MAX_WEIGHT) * 1_000 {
        return Err(too_large());
    }
    u32::try_from(milli).map_err(|_| too_large())
}

impl TrafficSplitSpec {
    pub(crate) fn validate(&self, issues: &mut Issues) {
        if self.service.trim().is_empty() {
            issues.push("spec.service", "the apex Service is required");
        }
        if self.backends.is_empty() {
            issues.push("spec.backends", "a split needs at least one backend");
        }
        let mut seen = BTreeSet::new();
        for (i, b) in self.backends.iter().enumerate() {
            if !crate::service::is_dns_label(&b.service) {
                issues.push(
                    format!("spec.backends[{i}].service"),
                    format!("{:?} is not a Service name", b.service),
                );
            } else if !seen.insert(b.service.as_str()) {
                issues.push(
                    format!("spec.backends[{i}].service"),
                    format!("{} is listed twice", b.service),
                );
            }
        }
        if !self.backends.is_empty() && self.backends.iter().all(|b| b.weight == 0) {
            issues.push(
                "spec.backends",
                "every backend has weight 0, so no request could be sent anywhere",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_and_quantities() {
        assert_eq!(parse_weight("90"), Ok(90_000));
        assert_eq!(parse_weight("0"), Ok(0));
        assert_eq!(parse_weight("500m"), Ok(500));
        assert_eq!(parse_weight(" 1 "), Ok(1_000));
        assert_eq!(parse_weight("0.5"), Ok(500));
        assert_eq!(parse_weight("1k"), Ok(1_000_000));
        assert_eq!(parse_weight("1Ki"), Ok(1_024_000));
        assert_eq!(parse_weight("1M"), Ok(1_000_000_000));
        // Fractions of a thousandth round up, like Kubernetes' MilliValue.
        assert_eq!(parse_weight("1.5m"), Ok(2));
        assert_eq!(parse_weight("0.0001"), Ok(1));
    }

    #[test]
    fn bad_weights_say_why() {
        let err = |v: &str| parse_weight(v).map_err(|e| e.to_string()).err();
        assert_eq!(
            err("ten").as_deref(),
            Some(
                r#""ten" is not a weight: expected a whole number like 90 or a quantity like 500m"#
            )
        );
        assert_eq!(
            err("-5").as_deref(),
            Some(r#""-5" is not a weight: weights cannot be negative"#)
        );
        assert_eq!(
            err("2M").as_deref(),
            Some(r#""2M" is too large a weight: at most 1000000"#)
        );
        assert!(err("").is_some());
        assert!(err("5x").is_some());
        assert!(err("1.2.3").is_some());
        assert!(err("m").is_some());
        assert!(err("99999999999999999999999999").is_some());
    }
}
