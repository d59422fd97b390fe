//! Test helpers shared by this crate's integration tests.
pub mod seaweed;
