//! The files the page loads, compiled into the binary (rust-embed, in debug builds too):
//! htmx 2.0.11 and htmx-ext-sse 2.2.4 as published on the npm registry (0BSD licence;
//! `assets/NOTICE` says where each came from) and the console's stylesheet.

use rust_embed::Embed;

#[derive(Embed)]
#[folder = "assets/"]
struct Files;

/// An asset's content type and bytes, by its name under `/console/assets/`.
pub fn get(name: &str) -> Option<(&'static str, Vec<u8>)> {
    let kind = match name.rsplit_once('.')?.1 {
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        _ => return None,
    };
    Files::get(name).map(|f| (kind, f.data.into_owned()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_scripts_and_the_stylesheet_are_in_the_binary() {
        let (kind, htmx) = super::get("htmx.min.js").unwrap();
        assert!(kind.starts_with("text/javascript"));
        assert!(String::from_utf8_lossy(&htmx).contains("htmx"));
        assert!(super::get("htmx-ext-sse.js").is_some());
        assert!(super::get("console.css").unwrap().0.starts_with("text/css"));
        assert!(super::get("../Cargo.toml").is_none());
        assert!(super::get("NOTICE").is_none());
    }
}
