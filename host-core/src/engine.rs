//! The typed engine client.
