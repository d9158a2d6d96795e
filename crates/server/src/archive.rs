//! The `Export-CsConfiguration` ZIP: one `configuration.json` entry holding every
//! configuration item and the CMS version it was taken at.

use std::io::{Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};
use store::Item;

const ENTRY: &str = "configuration.json";

/// What an export holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Configuration {
    pub(crate) format: u32,
    pub(crate) version: i64,
    pub(crate) created_at: i64,
    pub(crate) items: Vec<Item>,
}

pub(crate) fn write(path: &Path, config: &Configuration, overwrite: bool) -> Result<(), String> {
    if path.exists() && !overwrite {
        return Err(format!(
            "{} already exists; add -Force to overwrite it or choose another -FileName",
            path.display()
        ));
    }
    let file = std::fs::File::create(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    let mut zip = zip::ZipWriter::new(file);
    let options = zip::write::SimpleFileOptions::default();
    let json = serde_json::to_vec_pretty(config).map_err(|e| e.to_string())?;
    zip.start_file(ENTRY, options)
        .and_then(|()| zip.write_all(&json).map_err(Into::into))
        .and_then(|()| zip.finish().map(drop))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

pub(crate) fn read(path: &Path) -> Result<Configuration, String> {
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let not_export = |e: &dyn std::fmt::Display| {
        format!(
            "{} is not a configuration written by Export-CsConfiguration ({e})",
            path.display()
        )
    };
    let mut zip = zip::ZipArchive::new(file).map_err(|e| not_export(&e))?;
    let mut entry = zip.by_name(ENTRY).map_err(|e| not_export(&e))?;
    let mut json = String::new();
    entry
        .read_to_string(&mut json)
        .map_err(|e| not_export(&e))?;
    let config: Configuration = serde_json::from_str(&json).map_err(|e| not_export(&e))?;
    if config.format != 1 {
        return Err(not_export(&format!("format {} is unknown", config.format)));
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_other_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.zip");
        let config = Configuration {
            format: 1,
            version: 7,
            created_at: 1,
            items: vec![Item {
                key: "k".into(),
                value: Some("v".into()),
                version: 3,
            }],
        };
        write(&path, &config, false).unwrap();
        assert!(write(&path, &config, false).unwrap_err().contains("-Force"));
        assert_eq!(read(&path).unwrap(), config);
        std::fs::write(&path, b"not a zip").unwrap();
        assert!(read(&path).unwrap_err().contains("Export-CsConfiguration"));
    }
}
