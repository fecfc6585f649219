//! The filter language: a JSON AST ([`ast`]), a checker that types it against an entity
//! type ([`check`]), and an evaluator for in-process backends ([`eval`]).
//!
//! ```text
//! {"field":"age","op":"gte","value":18}
//! {"and":[..]} {"or":[..]} {"not":{..}}
//! {"related":{"type":"owns","direction":"in","where":{..}}}
//! ```

pub mod ast;
pub mod check;
pub mod eval;

pub use ast::{Filter, Op, MAX_CLAUSES, MAX_DEPTH, MAX_IN_VALUES};
pub use check::{
    check, CheckedFilter, CmpOp, Scalar, SchemaLookup, SysField, Target, TargetKind, Text, TextOp,
};
