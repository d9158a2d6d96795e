//! Topology tests: the example deployment, every broken fixture, and round trips.

mod fixtures;
mod roundtrip;
