//! The web console: the deployment as an operator in the middle of a disaster wants to see
//! it — a live map of sites and pools coloured by state, each pool's failover state, each
//! pair's backup lag and RPO as a chart, the CMS replicas, the DR operations step by step —
//! and the documented operations started from the page as the same cmdlet calls the shell
//! makes.
//!
//! This crate only draws: it takes a [`view::Snapshot`] and returns HTML and SVG, so every
//! page is tested without a server or a browser. The management API (`mgmt::console`)
//! reads the figures, keeps the sessions, streams the sections by server-sent events and
//! runs the actions. The page's script is htmx and its SSE extension, vendored from the npm
//! registry into `assets/` and compiled into the binary ([`assets`]): the operator's
//! machine needs a browser and nothing else, and the page works without a build step.

pub mod action;
pub mod assets;
pub mod chart;
pub mod map;
pub mod pages;
pub mod view;
