//! One module per subcommand.

pub mod mesh;
