//! The item table both stores share: `(key, value, version)`, where a `NULL` value is a
//! deletion replicas must see. The CMS keeps it as `cms_item`, a replica as `replica_item`;
//! the statements are spelled out per table because SQL cannot take a table name as a
//! parameter.

use crate::db::{self, Conn, Db};
use crate::{Context, Item, Result};

#[derive(Debug)]
pub(crate) struct ItemTable {
    get: &'static str,
    live: &'static str,
    prefixed: &'static str,
    upsert: &'static str,
}

pub(crate) const CMS: ItemTable = ItemTable {
    get: "SELECT value FROM cms_item WHERE key = $1",
    live: "SELECT key, value, version FROM cms_item WHERE value IS NOT NULL ORDER BY key",
    prefixed: "SELECT key, value, version FROM cms_item
               WHERE value IS NOT NULL AND key >= $1 AND key < $2 ORDER BY key",
    upsert: "INSERT INTO cms_item (key, value, version) VALUES ($1, $2, $3)
             ON CONFLICT (key) DO UPDATE SET value = $2, version = $3",
};

pub(crate) const REPLICA: ItemTable = ItemTable {
    get: "SELECT value FROM replica_item WHERE key = $1",
    live: "SELECT key, value, version FROM replica_item WHERE value IS NOT NULL ORDER BY key",
    prefixed: "SELECT key, value, version FROM replica_item
               WHERE value IS NOT NULL AND key >= $1 AND key < $2 ORDER BY key",
    upsert: "INSERT INTO replica_item (key, value, version) VALUES ($1, $2, $3)
             ON CONFLICT (key) DO UPDATE SET value = $2, version = $3",
};

impl ItemTable {
    /// The live value of one item.
    pub(crate) async fn get(&self, db: &Db, path: &str, key: &str) -> Result<Option<String>> {
        let row: Option<(Option<String>,)> = db::query_as(self.get)
            .bind(key)
            .fetch_optional(db)
            .await
            .at(path)?;
        Ok(row.and_then(|(v,)| v))
    }

    /// Every live item, by key.
    pub(crate) async fn live(&self, db: &Db, path: &str) -> Result<Vec<Item>> {
        db::query_as(self.live).fetch_all(db).await.at(path)
    }

    /// Every live item whose key starts with `prefix`, by key (an index range scan).
    pub(crate) async fn prefixed(&self, db: &Db, path: &str, prefix: &str) -> Result<Vec<Item>> {
        let end = format!("{prefix}\u{10FFFF}");
        db::query_as(self.prefixed)
            .bind(prefix)
            .bind(end)
            .fetch_all(db)
            .await
            .at(path)
    }

    /// Writes one item (inside the caller's transaction).
    pub(crate) async fn upsert(
        &self,
        conn: &mut Conn,
        path: &str,
        key: &str,
        value: Option<&str>,
        version: i64,
    ) -> Result<()> {
        db::query(self.upsert)
            .bind(key)
            .bind(value)
            .bind(version)
            .execute(conn)
            .await
            .at(path)?;
        Ok(())
    }

    /// Writes items, each with its own version (inside the caller's transaction).
    pub(crate) async fn upsert_items<'a>(
        &self,
        conn: &mut Conn,
        path: &str,
        items: impl IntoIterator<Item = &'a Item>,
    ) -> Result<()> {
        for item in items {
            self.upsert(conn, path, &item.key, item.value.as_deref(), item.version)
                .await?;
        }
        Ok(())
    }
}
