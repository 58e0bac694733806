//! The shared value types of `ferrymesh.common.v1`, checked at the edge:
//! amounts of money, postal addresses, payment cards, caller-chosen ids and
//! timestamps, and the field violations that bad input becomes.
//!
//! A leaf crate: no server, no database, so any service or tool can use it.

#![forbid(unsafe_code)]

mod address;
mod card;
mod ids;
mod methods;
mod money;
mod time;
mod violations;

pub use address::PostalAddress;
pub use card::{Card, luhn_valid};
pub use ids::{
    API_KEY_PREFIX, API_KEY_RANDOM_CHARS, MAX_QUOTED_CHARS, check_request_id, check_sku, looks_like_api_key,
    quoted,
};
pub use methods::MethodPattern;
pub use money::{Amount, MAX_UNITS, NANOS_PER_UNIT};
pub use time::{CalendarPeriod, current_year_month, month_bounds, now_micros, rfc3339, timestamp};
pub use violations::{MAX_REPORTED, Violations};

/// The generated `ferrymesh.common.v1` messages, shared by every service.
#[allow(unreachable_pub, missing_docs)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/ferrymesh.rs"));
}
