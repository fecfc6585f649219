//! The backend conformance suite: plain functions that take a [`Store`] over any
//! backend and exercise the whole contract. Every backend runs all of them, unchanged,
//! through [`conformance_tests!`](crate::conformance_tests).

use crate::store::Store;

/// Runs one named check; used by [`conformance_tests!`](crate::conformance_tests).
pub type Check = fn(&Store);

/// Every check of the suite, by name.
pub fn all() -> Vec<(&'static str, Check)> {
    vec![]
}

/// Expands to one `#[test]` per conformance check, each calling `$store` (an expression
/// that yields a [`Store`]) for a store to test.
#[macro_export]
macro_rules! conformance_tests {
    ($store:expr) => {
        #[test]
        fn conformance_suite() {
            for (name, check) in $crate::conformance::all() {
                eprintln!("conformance: {name}");
                check(&$store);
            }
        }
    };
}
