//! Meta's messaging-limit tiers and per-number throughput levels.
//!
//! A **tier** is the number of *unique* recipients a business portfolio may reach outside a customer
//! service window in a moving 24 h period (META.md §2). Meta spells the same tier in several ways
//! across API versions and webhooks, and [`Tier`] accepts all of them:
//!
//! | form | examples |
//! |---|---|
//! | our API names | `TIER_50`, `TIER_250`, `TIER_1000`, `TIER_2000`, `TIER_10000`, `TIER_100000`, `TIER_UNLIMITED` |
//! | Meta's names | `TIER_1K`, `TIER_2K`, `TIER_10K`, `TIER_100K`, `TIER_UNLIMITED`, `UNLIMITED`, `TIER_NOT_SET` |
//! | integers (JSON number or string) | `50`, `250`, `1000`, `2000`, `10000`, `100000`, `-1` (unlimited) |
//!
//! Parsing is case-insensitive and ignores surrounding whitespace. Anything else (e.g. `5000`) is
//! rejected rather than rounded, so that an unknown value never silently changes a quota.
//!
//! **`TIER_NOT_SET`** is what Meta reports for a number that has not sent yet. Such a number gets the
//! new-portfolio limit in practice, so [`Tier::NotSet`] counts as **250** for quota
//! ([`Tier::limit`]) and is reported to clients as `TIER_250` ([`Tier::as_api_str`]). Its own identity
//! is kept by [`Tier::as_meta_str`] (`TIER_NOT_SET`), which is the lossless form to persist.
//!
//! A **throughput level** is the per-number messages-per-second cap (META.md §3):
//! [`ThroughputLevel`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// A messaging-limit tier: how many unique recipients a portfolio may message per moving 24 h.
///
/// Serialises as the API name ([`Tier::as_api_str`]); deserialises from any form Meta or we use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tier {
    /// 50 unique recipients per 24 h (old unverified numbers).
    T50,
    /// 250 unique recipients per 24 h (a new portfolio).
    T250,
    /// 1 000 unique recipients per 24 h (`TIER_1K`, before October 2025).
    T1000,
    /// 2 000 unique recipients per 24 h (`TIER_2K`).
    T2000,
    /// 10 000 unique recipients per 24 h (`TIER_10K`).
    T10000,
    /// 100 000 unique recipients per 24 h (`TIER_100K`).
    T100000,
    /// No limit on unique recipients.
    Unlimited,
    /// Meta's `TIER_NOT_SET`: the number has not sent yet. Counts as 250 (see the module doc).
    NotSet,
}

/// The error for a tier string or number that is none of the forms listed in the module doc.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown messaging limit tier: {0:?}")]
pub struct UnknownTier(pub String);

impl Tier {
    /// Every tier, smallest limit first (`NotSet` last).
    pub const ALL: [Tier; 8] = [
        Tier::T50,
        Tier::T250,
        Tier::T1000,
        Tier::T2000,
        Tier::T10000,
        Tier::T100000,
        Tier::Unlimited,
        Tier::NotSet,
    ];

    /// The name clients see in our API (`TIER_1000`, …). `NotSet` is reported as `TIER_250`.
    pub fn as_api_str(self) -> &'static str {
        match self {
            Tier::T50 => "TIER_50",
            Tier::T250 | Tier::NotSet => "TIER_250",
            Tier::T1000 => "TIER_1000",
            Tier::T2000 => "TIER_2000",
            Tier::T10000 => "TIER_10000",
            Tier::T100000 => "TIER_100000",
            Tier::Unlimited => "TIER_UNLIMITED",
        }
    }

    /// The name Meta's Graph API uses (`TIER_1K`, `TIER_NOT_SET`, …). Lossless: parsing it gives back
    /// the same variant, so this is the form to store in the database. Also what the simulator serves.
    pub fn as_meta_str(self) -> &'static str {
        match self {
            Tier::T50 => "TIER_50",
            Tier::T250 => "TIER_250",
            Tier::T1000 => "TIER_1K",
            Tier::T2000 => "TIER_2K",
            Tier::T10000 => "TIER_10K",
            Tier::T100000 => "TIER_100K",
            Tier::Unlimited => "TIER_UNLIMITED",
            Tier::NotSet => "TIER_NOT_SET",
        }
    }

    /// Unique recipients allowed per moving 24 h; `None` means unlimited. `NotSet` gives 250.
    pub fn limit(self) -> Option<u32> {
        match self {
            Tier::T50 => Some(50),
            Tier::T250 | Tier::NotSet => Some(250),
            Tier::T1000 => Some(1_000),
            Tier::T2000 => Some(2_000),
            Tier::T10000 => Some(10_000),
            Tier::T100000 => Some(100_000),
            Tier::Unlimited => None,
        }
    }

    /// The tier for one of Meta's integer limits: 50, 250, 1000, 2000, 10000, 100000, or -1 for
    /// unlimited. Any other number is `None`.
    pub fn from_limit(limit: i64) -> Option<Tier> {
        match limit {
            50 => Some(Tier::T50),
            250 => Some(Tier::T250),
            1_000 => Some(Tier::T1000),
            2_000 => Some(Tier::T2000),
            10_000 => Some(Tier::T10000),
            100_000 => Some(Tier::T100000),
            -1 => Some(Tier::Unlimited),
            _ => None,
        }
    }

    /// The tier in a JSON value as Meta sends it: a number (`2000`, `-1`) or a string in any of the
    /// forms of the module doc. `None` for anything else (null, objects, unknown names).
    pub fn from_json(value: &Value) -> Option<Tier> {
        match value {
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Tier::from_limit(i)
                } else {
                    // Integral floats such as `2000.0`; anything fractional or huge is not a tier.
                    n.as_f64()
                        .filter(|f| f.fract() == 0.0 && f.abs() <= 1.0e9)
                        .and_then(|f| Tier::from_limit(f as i64))
                }
            }
            Value::String(s) => s.parse().ok(),
            _ => None,
        }
    }
}

impl FromStr for Tier {
    type Err = UnknownTier;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let upper = s.trim().to_ascii_uppercase();
        let rest = upper.strip_prefix("TIER_").unwrap_or(&upper);
        let tier = match rest {
            "UNLIMITED" => Some(Tier::Unlimited),
            "NOT_SET" => Some(Tier::NotSet),
            _ => {
                let (digits, multiplier) = match rest.strip_suffix('K') {
                    Some(d) => (d, 1_000),
                    None => (rest, 1),
                };
                digits
                    .parse::<i64>()
                    .ok()
                    .and_then(|n| n.checked_mul(multiplier))
                    .and_then(Tier::from_limit)
            }
        };
        tier.ok_or_else(|| UnknownTier(s.to_owned()))
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_api_str())
    }
}

impl Serialize for Tier {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_api_str())
    }
}

/// In the OpenAPI document: a string, one of the API names.
impl utoipa::PartialSchema for Tier {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let mut names: Vec<&str> = Vec::new();
        for name in Tier::ALL.map(Tier::as_api_str) {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some("A messaging-limit tier (API name)."))
            .enum_values(Some(names))
            .into()
    }
}

impl utoipa::ToSchema for Tier {}

impl<'de> Deserialize<'de> for Tier {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Tier::from_json(&value)
            .ok_or_else(|| serde::de::Error::custom(UnknownTier(value.to_string())))
    }
}

/// A phone number's throughput level: how many messages per second it may send (META.md §3).
///
/// Serialises as Meta's upper-case name (`STANDARD`, …).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ThroughputLevel {
    /// Meta's default: 80 messages per second per number.
    Standard,
    /// The automatic upgrade for high-volume, good-quality numbers: 1 000 messages per second.
    High,
    /// A number shared with the WhatsApp Business app: fixed at 20 messages per second.
    Coexistence,
    /// Meta's `NOT_APPLICABLE` (seen in SDKs); paced like `Standard`, the documented default.
    NotApplicable,
}

/// The error for a throughput level string Meta does not define.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown throughput level: {0:?}")]
pub struct UnknownThroughputLevel(pub String);

impl ThroughputLevel {
    /// Meta's name for the level.
    pub fn as_str(self) -> &'static str {
        match self {
            ThroughputLevel::Standard => "STANDARD",
            ThroughputLevel::High => "HIGH",
            ThroughputLevel::Coexistence => "COEXISTENCE",
            ThroughputLevel::NotApplicable => "NOT_APPLICABLE",
        }
    }

    /// Messages per second a number at this level may send: 80, 1 000, 20, or 80.
    pub fn mps(self) -> u32 {
        match self {
            ThroughputLevel::Standard | ThroughputLevel::NotApplicable => 80,
            ThroughputLevel::High => 1_000,
            ThroughputLevel::Coexistence => 20,
        }
    }

    /// Lenient reading of Meta's `throughput.level`: an unknown or missing value means `Standard`,
    /// Meta's documented default, so a new level name never stops a number from sending.
    pub fn from_meta(level: Option<&str>) -> ThroughputLevel {
        level
            .and_then(|s| s.parse().ok())
            .unwrap_or(ThroughputLevel::Standard)
    }
}

impl FromStr for ThroughputLevel {
    type Err = UnknownThroughputLevel;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_uppercase().as_str() {
            "STANDARD" => Ok(ThroughputLevel::Standard),
            "HIGH" => Ok(ThroughputLevel::High),
            "COEXISTENCE" => Ok(ThroughputLevel::Coexistence),
            "NOT_APPLICABLE" => Ok(ThroughputLevel::NotApplicable),
            _ => Err(UnknownThroughputLevel(s.to_owned())),
        }
    }
}

impl fmt::Display for ThroughputLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn api_names_and_limits() {
        let expected = [
            (Tier::T50, "TIER_50", Some(50)),
            (Tier::T250, "TIER_250", Some(250)),
            (Tier::T1000, "TIER_1000", Some(1_000)),
            (Tier::T2000, "TIER_2000", Some(2_000)),
            (Tier::T10000, "TIER_10000", Some(10_000)),
            (Tier::T100000, "TIER_100000", Some(100_000)),
            (Tier::Unlimited, "TIER_UNLIMITED", None),
            (Tier::NotSet, "TIER_250", Some(250)),
        ];
        for (tier, name, limit) in expected {
            assert_eq!(tier.as_api_str(), name);
            assert_eq!(tier.to_string(), name);
            assert_eq!(tier.limit(), limit, "{tier:?}");
        }
    }

    #[test]
    fn every_name_round_trips() {
        for tier in Tier::ALL {
            assert_eq!(tier.as_meta_str().parse::<Tier>(), Ok(tier));
            let via_api: Tier = tier.as_api_str().parse().unwrap();
            assert_eq!(via_api.limit(), tier.limit());
        }
    }

    #[test]
    fn parses_meta_short_forms() {
        let cases = [
            ("TIER_1K", Tier::T1000),
            ("TIER_2K", Tier::T2000),
            ("TIER_10K", Tier::T10000),
            ("TIER_100K", Tier::T100000),
            ("TIER_UNLIMITED", Tier::Unlimited),
            ("UNLIMITED", Tier::Unlimited),
            ("TIER_NOT_SET", Tier::NotSet),
            ("tier_2k", Tier::T2000),
            ("  TIER_250 ", Tier::T250),
            ("TIER_100000", Tier::T100000),
        ];
        for (s, tier) in cases {
            assert_eq!(s.parse::<Tier>(), Ok(tier), "{s}");
        }
    }

    #[test]
    fn parses_integers_as_numbers_and_strings() {
        for (n, tier) in [
            (50, Tier::T50),
            (250, Tier::T250),
            (1000, Tier::T1000),
            (2000, Tier::T2000),
            (10000, Tier::T10000),
            (100000, Tier::T100000),
            (-1, Tier::Unlimited),
        ] {
            assert_eq!(Tier::from_limit(n), Some(tier));
            assert_eq!(Tier::from_json(&json!(n)), Some(tier));
            assert_eq!(Tier::from_json(&json!(n.to_string())), Some(tier));
        }
        assert_eq!(Tier::from_json(&json!(2000.0)), Some(Tier::T2000));
    }

    #[test]
    fn rejects_unknown_values() {
        for s in [
            "",
            "TIER_",
            "TIER_5K",
            "5000",
            "0",
            "TIER_-1K",
            "K",
            "TIER_99999999999999999999K",
        ] {
            assert!(s.parse::<Tier>().is_err(), "{s}");
        }
        for v in [
            json!(null),
            json!(true),
            json!(5000),
            json!(2000.5),
            json!(1e300),
            json!({}),
        ] {
            assert_eq!(Tier::from_json(&v), None, "{v}");
        }
        assert_eq!(Tier::from_json(&json!(u64::MAX)), None);
    }

    #[test]
    fn serde_uses_api_names_and_accepts_every_form() {
        assert_eq!(
            serde_json::to_value(Tier::T1000).unwrap(),
            json!("TIER_1000")
        );
        assert_eq!(
            serde_json::to_value(Tier::NotSet).unwrap(),
            json!("TIER_250")
        );
        let t: Tier = serde_json::from_value(json!("TIER_10K")).unwrap();
        assert_eq!(t, Tier::T10000);
        let t: Tier = serde_json::from_value(json!(-1)).unwrap();
        assert_eq!(t, Tier::Unlimited);
        assert!(serde_json::from_value::<Tier>(json!("TIER_3K")).is_err());
    }

    #[test]
    fn throughput_levels() {
        assert_eq!(ThroughputLevel::Standard.mps(), 80);
        assert_eq!(ThroughputLevel::High.mps(), 1000);
        assert_eq!(ThroughputLevel::Coexistence.mps(), 20);
        assert_eq!(ThroughputLevel::NotApplicable.mps(), 80);
        for level in [
            ThroughputLevel::Standard,
            ThroughputLevel::High,
            ThroughputLevel::Coexistence,
            ThroughputLevel::NotApplicable,
        ] {
            assert_eq!(level.as_str().parse(), Ok(level));
            assert_eq!(serde_json::to_value(level).unwrap(), json!(level.as_str()));
        }
        assert_eq!("high".parse(), Ok(ThroughputLevel::High));
        assert!("TURBO".parse::<ThroughputLevel>().is_err());
        assert_eq!(
            ThroughputLevel::from_meta(Some("TURBO")),
            ThroughputLevel::Standard
        );
        assert_eq!(ThroughputLevel::from_meta(None), ThroughputLevel::Standard);
        assert_eq!(
            ThroughputLevel::from_meta(Some("HIGH")),
            ThroughputLevel::High
        );
    }
}
