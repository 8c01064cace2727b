//! `symphony`: the git-backed issue tracker, agent orchestrator and mesh node.

fn main() {}
