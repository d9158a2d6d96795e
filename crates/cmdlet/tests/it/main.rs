//! Shell-language tests across modules: the seed lines, and properties of the parser.

mod properties;
mod seed_lines;
