//! The ZIP files operators keep: `Export-CsConfiguration` (one `configuration.json` entry
//! holding every configuration item and the CMS version it was taken at) and
//! `Export-CsUserData` (`userdata.json` plus the pool's meeting content under `files/`,
//! each named by its SHA-256 and checked on the way back in).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};
use store::{Item, UserItem};

const ENTRY: &str = "configuration.json";
const USERDATA_ENTRY: &str = "userdata.json";

/// What a configuration export holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Configuration {
    pub format: u32,
    pub version: i64,
    pub created_at: i64,
    pub items: Vec<Item>,
}

/// What a user-data export holds, besides its files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserData {
    pub format: u32,
    pub pool: String,
    pub created_at: i64,
    pub items: Vec<UserItem>,
}

/// Writes `entries` (name, bytes) as a ZIP at `path`, readable by the server's account only
/// (an export holds every user's digest hashes). An existing file is replaced only when
/// `replace` says so and only when it is itself a ZIP — an earlier export — never a link
/// or any other file (a database, a key, the audit log) the server could write.
fn write_entries<'a>(
    path: &Path,
    entries: impl Iterator<Item = (String, &'a [u8])>,
    replace: bool,
) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let io = |e: &dyn std::fmt::Display| format!("cannot write {}: {e}", path.display());
    let mut options = std::fs::OpenOptions::new();
    options.write(true).mode(0o600);
    match std::fs::symlink_metadata(path) {
        Err(_) => {
            options.create_new(true);
        }
        Ok(meta) if meta.file_type().is_symlink() || !meta.is_file() => {
            return Err(format!(
                "{} is not a regular file: an export is written only to a new file or over an earlier export",
                path.display()
            ));
        }
        Ok(_) if !replace => {
            return Err(format!(
                "{} already exists; add -Force to overwrite it or choose another -FileName",
                path.display()
            ));
        }
        Ok(_) => {
            let is_zip = std::fs::File::open(path)
                .ok()
                .is_some_and(|f| zip::ZipArchive::new(f).is_ok());
            if !is_zip {
                return Err(format!(
                    "{} is not an earlier export (not a ZIP file): -Force overwrites only an export; choose another -FileName",
                    path.display()
                ));
            }
            options.truncate(true);
        }
    }
    let file = options.open(path).map_err(|e| io(&e))?;
    let mut zip = zip::ZipWriter::new(file);
    let options = zip::write::SimpleFileOptions::default();
    for (name, bytes) in entries {
        zip.start_file(name, options).map_err(|e| io(&e))?;
        zip.write_all(bytes).map_err(|e| io(&e))?;
    }
    zip.finish().map_err(|e| io(&e))?;
    Ok(())
}

/// How much of an archive an import reads, at most: checked against what each entry's
/// header declares before anything is read, and again while reading (a header may lie), so
/// a small crafted ZIP cannot fill the server's memory.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub entries: usize,
    pub entry_bytes: u64,
    pub total_bytes: u64,
}

impl Bounds {
    /// An import's bounds: room for every user's data of a large pool and its meeting
    /// content, each file no larger than user services take.
    pub const IMPORT: Bounds = Bounds {
        entries: 200_000,
        entry_bytes: 256 * 1024 * 1024,
        total_bytes: 1024 * 1024 * 1024,
    };
}

/// Every entry of the ZIP at `path`, within `bounds`; `not_what` names the kind of file in
/// the error when it is not one ("a configuration written by Export-CsConfiguration").
fn read_entries(
    path: &Path,
    not_what: &str,
    bounds: Bounds,
) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let not_export =
        |e: &dyn std::fmt::Display| format!("{} is not {not_what} ({e})", path.display());
    let too_large = |what: String| {
        format!(
            "{} is refused: {what}; nothing was imported. An export of this deployment is \
             smaller; check that the file is the one Export-CsConfiguration or Export-CsUserData wrote",
            path.display()
        )
    };
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| not_export(&e))?;
    if zip.len() > bounds.entries {
        return Err(too_large(format!(
            "it has {} entries, more than the {} an import reads",
            zip.len(),
            bounds.entries
        )));
    }
    // What the headers declare, all of it, before a byte is inflated.
    let mut declared = 0u64;
    for i in 0..zip.len() {
        let entry = zip.by_index_raw(i).map_err(|e| not_export(&e))?;
        if entry.size() > bounds.entry_bytes {
            return Err(too_large(format!(
                "entry {} holds {} bytes, more than the {} an entry may",
                api::shown(entry.name()),
                entry.size(),
                bounds.entry_bytes
            )));
        }
        declared = declared.saturating_add(entry.size());
    }
    if declared > bounds.total_bytes {
        return Err(too_large(format!(
            "its entries hold {declared} bytes, more than the {} an import reads",
            bounds.total_bytes
        )));
    }
    let mut entries = BTreeMap::new();
    let mut total = 0u64;
    for i in 0..zip.len() {
        let entry = zip.by_index(i).map_err(|e| not_export(&e))?;
        let name = entry.name().to_string();
        let allowed = bounds.entry_bytes.min(bounds.total_bytes - total);
        let mut bytes = Vec::new();
        // One byte past what is allowed tells a lying header from an honest one.
        entry
            .take(allowed + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| not_export(&e))?;
        if bytes.len() as u64 > allowed {
            return Err(too_large(format!(
                "entry {} inflates past what its header declared",
                api::shown(&name)
            )));
        }
        total += bytes.len() as u64;
        entries.insert(name, bytes);
    }
    Ok(entries)
}

/// Runs a read of an archive on a thread for blocking work, off the runtime's threads.
pub async fn off_runtime<T: Send + 'static>(
    read: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(read)
        .await
        .map_err(|e| format!("reading the archive stopped: {e}"))?
}

/// The JSON entry `name` of a read archive, checked to be format 1.
fn json_entry<T: serde::de::DeserializeOwned>(
    entries: &BTreeMap<String, Vec<u8>>,
    name: &str,
    format: impl Fn(&T) -> u32,
    not_export: impl Fn(&dyn std::fmt::Display) -> String,
) -> Result<T, String> {
    let bytes = entries
        .get(name)
        .ok_or_else(|| not_export(&format!("it has no {name}")))?;
    let value: T = serde_json::from_slice(bytes).map_err(|e| not_export(&e))?;
    match format(&value) {
        1 => Ok(value),
        other => Err(not_export(&format!("format {other} is unknown"))),
    }
}

pub fn write(path: &Path, config: &Configuration, overwrite: bool) -> Result<(), String> {
    let json = serde_json::to_vec_pretty(config).map_err(|e| e.to_string())?;
    write_entries(
        path,
        std::iter::once((ENTRY.to_string(), json.as_slice())),
        overwrite,
    )
}

const NOT_CONFIGURATION: &str = "a configuration written by Export-CsConfiguration";

pub fn read(path: &Path) -> Result<Configuration, String> {
    let entries = read_entries(path, NOT_CONFIGURATION, Bounds::IMPORT)?;
    json_entry(
        &entries,
        ENTRY,
        |c: &Configuration| c.format,
        |e| format!("{} is not {NOT_CONFIGURATION} ({e})", path.display()),
    )
}

/// Reads an `Export-CsLisConfiguration` file: a configuration export holding only
/// Location Information Service items.
pub fn read_lis(path: &Path) -> Result<Configuration, String> {
    let config = read(path)?;
    if let Some(other) = config
        .items
        .iter()
        .find(|i| !i.key.starts_with(cms::keys::LIS_PREFIX))
    {
        return Err(format!(
            "{} is not an Export-CsLisConfiguration file (it holds {}); Import-CsConfiguration and -ConfigurationFileName take whole configurations",
            path.display(),
            other.key
        ));
    }
    Ok(config)
}

/// Writes a user-data export with the files its content items refer to.
pub fn write_user_data(
    path: &Path,
    export: &UserData,
    files: &BTreeMap<String, Vec<u8>>,
) -> Result<(), String> {
    let json = serde_json::to_vec_pretty(export).map_err(|e| e.to_string())?;
    let entries = std::iter::once((USERDATA_ENTRY.to_string(), json.as_slice())).chain(
        files
            .iter()
            .map(|(sha, bytes)| (format!("files/{sha}"), bytes.as_slice())),
    );
    // An earlier user-data export at the same path is replaced, as before.
    write_entries(path, entries, true)
}

const NOT_USER_DATA: &str = "a file written by Export-CsUserData";

/// Reads a user-data export and its files, each checked against its SHA-256.
pub fn read_user_data(path: &Path) -> Result<(UserData, BTreeMap<String, Vec<u8>>), String> {
    let not_export =
        |e: &dyn std::fmt::Display| format!("{} is not {NOT_USER_DATA} ({e})", path.display());
    let entries = read_entries(path, NOT_USER_DATA, Bounds::IMPORT)?;
    let export = json_entry(
        &entries,
        USERDATA_ENTRY,
        |u: &UserData| u.format,
        not_export,
    )?;
    let mut files = BTreeMap::new();
    for (name, bytes) in entries {
        if let Some(sha) = name.strip_prefix("files/") {
            if store::hex_sha256(&bytes) != sha {
                return Err(not_export(&format!(
                    "file {sha} does not match its checksum"
                )));
            }
            files.insert(sha.to_string(), bytes);
        }
    }
    Ok((export, files))
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

    #[test]
    fn user_data_round_trips_with_its_files_and_refuses_tampered_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u.zip");
        let export = UserData {
            format: 1,
            pool: "pool1.contoso.com".into(),
            created_at: 1,
            items: vec![],
        };
        let sha = store::hex_sha256(b"slides");
        let files = BTreeMap::from([(sha.clone(), b"slides".to_vec())]);
        write_user_data(&path, &export, &files).unwrap();
        assert_eq!(read_user_data(&path).unwrap(), (export.clone(), files));
        let bad = BTreeMap::from([(sha, b"changed".to_vec())]);
        write_user_data(&path, &export, &bad).unwrap();
        assert!(
            read_user_data(&path)
                .unwrap_err()
                .contains("does not match its checksum")
        );
        write(
            &dir.path().join("c.zip"),
            &Configuration {
                format: 1,
                version: 1,
                created_at: 1,
                items: vec![],
            },
            false,
        )
        .unwrap();
        assert!(
            read_user_data(&dir.path().join("c.zip"))
                .unwrap_err()
                .contains("Export-CsUserData")
        );
    }

    /// A ZIP at `path` with `entries` (name, bytes), deflated.
    fn zip_of(path: &Path, entries: &[(&str, Vec<u8>)]) {
        let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, bytes) in entries {
            zip.start_file(*name, options).unwrap();
            zip.write_all(bytes).unwrap();
        }
        zip.finish().unwrap();
    }

    #[test]
    fn a_crafted_archive_is_refused_before_it_is_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let small = Bounds {
            entries: 3,
            entry_bytes: 1000,
            total_bytes: 1500,
        };
        // Too many entries.
        let many = dir.path().join("many.zip");
        let names: Vec<String> = (0..4).map(|i| format!("e{i}")).collect();
        zip_of(
            &many,
            &names
                .iter()
                .map(|n| (n.as_str(), vec![1u8]))
                .collect::<Vec<_>>(),
        );
        let e = read_entries(&many, "x", small).unwrap_err();
        assert!(e.contains("4 entries, more than the 3"), "{e}");
        // One entry too large: a megabyte of zeros is a kilobyte deflated.
        let bomb = dir.path().join("bomb.zip");
        zip_of(&bomb, &[("configuration.json", vec![0u8; 1 << 20])]);
        assert!(std::fs::metadata(&bomb).unwrap().len() < 8 * 1024);
        let e = read_entries(&bomb, "x", small).unwrap_err();
        assert!(e.contains("holds 1048576 bytes, more than the 1000"), "{e}");
        assert!(e.contains("nothing was imported"), "{e}");
        // Each entry within bounds, all of them together not.
        let wide = dir.path().join("wide.zip");
        zip_of(&wide, &[("a", vec![0u8; 900]), ("b", vec![0u8; 900])]);
        let e = read_entries(&wide, "x", small).unwrap_err();
        assert!(e.contains("hold 1800 bytes, more than the 1500"), "{e}");
        // Within every bound: read.
        let fine = dir.path().join("fine.zip");
        zip_of(&fine, &[("a", vec![7u8; 900]), ("b", vec![8u8; 500])]);
        let read = read_entries(&fine, "x", small).unwrap();
        assert_eq!(read["a"].len() + read["b"].len(), 1400);
    }

    #[tokio::test]
    async fn an_import_reads_off_the_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("not.zip");
        std::fs::write(&path, b"not a zip").unwrap();
        let e = off_runtime(move || read(&path)).await.unwrap_err();
        assert!(
            e.contains("is not a configuration written by Export-CsConfiguration"),
            "{e}"
        );
    }
}
