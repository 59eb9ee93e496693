//! Conversions between API messages and the domain (store records, kernel,
//! dispatcher and executor types), one file per resource: decoding a
//! request checks every field and reports every problem at once; encoding
//! never fails on what this server stored, except where stored bytes do
//! not decode.

pub mod backend;
pub mod chain;
pub mod hook;
pub mod run;
pub mod worker;
