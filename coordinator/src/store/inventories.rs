//! Named inventories and their hosts and groups. An inventory's content (variables, hosts,
//! groups) is only ever replaced as a whole, in one transaction, so a reader sees the old
//! content or the new one and a failed import leaves the old one in place.

use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{Page, Store, StoreError, now};
use crate::inventories::{GroupContent, InventoryContent};

/// Rows per INSERT statement when content is written (3-6 parameters a row).
const INSERT_CHUNK: usize = 500;

/// A stored inventory (without its hosts).
#[derive(Debug, Clone, Serialize)]
pub struct Inventory {
    /// Integer id.
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// sha256 of the project archive holding the source, if it has one.
    pub source_project: Option<String>,
    /// The source file inside that archive.
    pub source_path: Option<String>,
    /// The `all` group's variables (JSON object text, as AWX shows them).
    pub variables: String,
    /// Hosts in it.
    pub total_hosts: i64,
    /// Groups in it (`all` and `ungrouped` not counted).
    pub total_groups: i64,
    /// Created (RFC 3339).
    pub created: String,
    /// Content last replaced (RFC 3339).
    pub modified: String,
    /// The inventory update whose result the content is.
    pub last_update_id: Option<i64>,
}

/// What creating an inventory takes (content is given separately).
#[derive(Debug, Clone, Default)]
pub struct NewInventory {
    /// Unique name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// sha256 of the project archive holding the source.
    pub source_project: Option<String>,
    /// The source file inside it.
    pub source_path: Option<String>,
}

/// One host as listed.
#[derive(Debug, Clone, Serialize)]
pub struct HostRow {
    /// Integer id (new ids after each replacement).
    pub id: i64,
    /// The inventory it belongs to.
    pub inventory_id: i64,
    /// Host name.
    pub name: String,
    /// Its variables (JSON object text, as AWX shows them).
    pub variables: String,
}

fn inventory_from_row(row: &SqliteRow) -> Result<Inventory, StoreError> {
    Ok(Inventory {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        source_project: row.try_get("source_project")?,
        source_path: row.try_get("source_path")?,
        variables: row.try_get("variables")?,
        total_hosts: row.try_get("total_hosts")?,
        total_groups: row.try_get("total_groups")?,
        created: row.try_get("created")?,
        modified: row.try_get("modified")?,
        last_update_id: row.try_get("last_update_id")?,
    })
}

const SELECT_INVENTORY: &str = "SELECT i.*, \
     (SELECT COUNT(*) FROM inventory_hosts h WHERE h.inventory_id = i.id) AS total_hosts, \
     (SELECT COUNT(*) FROM inventory_groups g WHERE g.inventory_id = i.id) AS total_groups \
     FROM inventories i";

fn object(text: &str, what: &'static str) -> Result<Map<String, Value>, StoreError> {
    serde_json::from_str(text).map_err(|_| StoreError::Invalid {
        what,
        value: text.chars().take(80).collect(),
    })
}

fn name_list(text: &str, what: &'static str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(text).map_err(|_| StoreError::Invalid {
        what,
        value: text.chars().take(80).collect(),
    })
}

fn json_text<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "{}".into())
}

impl Store {
    /// Stores a new inventory with `content`, in one transaction. `None`: the name is taken.
    pub async fn create_inventory(
        &self,
        new: &NewInventory,
        content: &InventoryContent,
    ) -> Result<Option<Inventory>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let stamp = now();
        let inserted = sqlx::query(
            "INSERT INTO inventories (name, description, source_project, source_path, variables, created, modified) \
             VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING id",
        )
        .bind(&new.name)
        .bind(&new.description)
        .bind(&new.source_project)
        .bind(&new.source_path)
        .bind(json_text(&content.variables))
        .bind(&stamp)
        .fetch_one(&mut *tx)
        .await;
        let id: i64 = match inserted {
            Ok(row) => row.try_get("id")?,
            Err(sqlx::Error::Database(d)) if d.is_unique_violation() => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        write_content(&mut tx, id, content).await?;
        tx.commit().await?;
        self.inventory(id).await
    }

    /// One inventory.
    pub async fn inventory(&self, id: i64) -> Result<Option<Inventory>, StoreError> {
        let row = sqlx::query(&format!("{SELECT_INVENTORY} WHERE i.id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(inventory_from_row).transpose()
    }

    /// A page of inventories by id.
    pub async fn inventories(
        &self,
        limit: i64,
        offset: i64,
    ) -> Result<Page<Inventory>, StoreError> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM inventories")
            .fetch_one(&self.pool)
            .await?;
        let rows = sqlx::query(&format!(
            "{SELECT_INVENTORY} ORDER BY i.id LIMIT $1 OFFSET $2"
        ))
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        Ok(Page {
            count,
            results: rows
                .iter()
                .map(inventory_from_row)
                .collect::<Result<_, _>>()?,
        })
    }

    /// A page of an inventory's hosts by name.
    pub async fn inventory_hosts(
        &self,
        inventory_id: i64,
        limit: i64,
        offset: i64,
    ) -> Result<Page<HostRow>, StoreError> {
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM inventory_hosts WHERE inventory_id = $1")
                .bind(inventory_id)
                .fetch_one(&self.pool)
                .await?;
        let rows = sqlx::query(
            "SELECT id, inventory_id, name, variables FROM inventory_hosts \
             WHERE inventory_id = $1 ORDER BY name LIMIT $2 OFFSET $3",
        )
        .bind(inventory_id)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        let results = rows
            .iter()
            .map(|r| {
                Ok(HostRow {
                    id: r.try_get("id")?,
                    inventory_id: r.try_get("inventory_id")?,
                    name: r.try_get("name")?,
                    variables: r.try_get("variables")?,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(Page { count, results })
    }

    /// An inventory's whole content, read in one transaction (a consistent snapshot).
    pub async fn inventory_content(&self, id: i64) -> Result<Option<InventoryContent>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let Some(vars): Option<String> =
            sqlx::query_scalar("SELECT variables FROM inventories WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
        else {
            return Ok(None);
        };
        let mut content = InventoryContent {
            variables: object(&vars, "inventory variables")?,
            ..InventoryContent::default()
        };
        let hosts =
            sqlx::query("SELECT name, variables FROM inventory_hosts WHERE inventory_id = $1")
                .bind(id)
                .fetch_all(&mut *tx)
                .await?;
        for r in hosts {
            let v: String = r.try_get("variables")?;
            content
                .hosts
                .insert(r.try_get("name")?, object(&v, "host variables")?);
        }
        let groups = sqlx::query(
            "SELECT name, variables, hosts, children FROM inventory_groups WHERE inventory_id = $1",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        for r in groups {
            let (v, h, c): (String, String, String) = (
                r.try_get("variables")?,
                r.try_get("hosts")?,
                r.try_get("children")?,
            );
            content.groups.insert(
                r.try_get("name")?,
                GroupContent {
                    variables: object(&v, "group variables")?,
                    hosts: name_list(&h, "group hosts")?.into_iter().collect(),
                    children: name_list(&c, "group children")?.into_iter().collect(),
                },
            );
        }
        tx.commit().await?;
        Ok(Some(content))
    }

    /// Replaces an inventory's variables, hosts and groups with `content` in one transaction,
    /// recording the update that produced it. False (nothing changed): no such inventory.
    pub async fn replace_inventory_content(
        &self,
        id: i64,
        content: &InventoryContent,
        update_id: Option<i64>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let found = sqlx::query(
            "UPDATE inventories SET variables = $1, modified = $2, \
             last_update_id = COALESCE($3, last_update_id) WHERE id = $4",
        )
        .bind(json_text(&content.variables))
        .bind(now())
        .bind(update_id)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if found.rows_affected() != 1 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM inventory_hosts WHERE inventory_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM inventory_groups WHERE inventory_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        write_content(&mut tx, id, content).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// An inventory update of `inventory_id` that has not ended yet, if any.
    pub async fn active_inventory_update(
        &self,
        inventory_id: i64,
    ) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM jobs WHERE kind = 'inventory_update' AND inventory_id = $1 \
             AND status IN ('pending', 'waiting', 'submitting', 'running') ORDER BY id LIMIT 1",
        )
        .bind(inventory_id)
        .fetch_optional(&self.pool)
        .await?)
    }
}

/// Inserts `content`'s hosts and groups for inventory `id` (the caller's transaction).
async fn write_content(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    id: i64,
    content: &InventoryContent,
) -> Result<(), StoreError> {
    let hosts: Vec<(&String, String)> = content
        .hosts
        .iter()
        .map(|(name, vars)| (name, json_text(vars)))
        .collect();
    for chunk in hosts.chunks(INSERT_CHUNK) {
        let mut insert =
            sqlx::QueryBuilder::new("INSERT INTO inventory_hosts (inventory_id, name, variables) ");
        insert.push_values(chunk, |mut row, (name, vars)| {
            row.push_bind(id).push_bind(*name).push_bind(vars);
        });
        insert.build().execute(&mut **tx).await?;
    }
    let groups: Vec<(&String, String, String, String)> = content
        .groups
        .iter()
        .map(|(name, g)| {
            (
                name,
                json_text(&g.variables),
                json_text(&g.hosts),
                json_text(&g.children),
            )
        })
        .collect();
    for chunk in groups.chunks(INSERT_CHUNK) {
        let mut insert = sqlx::QueryBuilder::new(
            "INSERT INTO inventory_groups (inventory_id, name, variables, hosts, children) ",
        );
        insert.push_values(chunk, |mut row, (name, vars, hosts, children)| {
            row.push_bind(id)
                .push_bind(*name)
                .push_bind(vars)
                .push_bind(hosts)
                .push_bind(children);
        });
        insert.build().execute(&mut **tx).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventories::parse_list;

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("t.db")).await.unwrap();
        (dir, s)
    }

    fn content(text: &str) -> InventoryContent {
        parse_list(text.as_bytes()).unwrap()
    }

    #[tokio::test]
    async fn content_round_trips_and_names_are_unique() {
        let (_d, s) = store().await;
        let c = content(
            r#"{"_meta": {"hostvars": {"a": {"x": 1}}}, "all": {"vars": {"v": true}},
                "g": {"hosts": ["a", "b"], "vars": {"gv": "1"}, "children": ["k"]}}"#,
        );
        let new = NewInventory {
            name: "prod".into(),
            ..NewInventory::default()
        };
        let inv = s.create_inventory(&new, &c).await.unwrap().unwrap();
        assert_eq!((inv.total_hosts, inv.total_groups), (2, 2));
        assert_eq!(s.inventory_content(inv.id).await.unwrap().unwrap(), c);
        assert!(s.create_inventory(&new, &c).await.unwrap().is_none());
        let page = s.inventory_hosts(inv.id, 1, 1).await.unwrap();
        assert_eq!(page.count, 2);
        assert_eq!(page.results[0].name, "b");
        assert_eq!(page.results[0].variables, "{}");
        assert!(s.inventory_content(inv.id + 1).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn replacing_swaps_everything_at_once() {
        let (_d, s) = store().await;
        let old = content(r#"{"g": {"hosts": ["a", "b"]}}"#);
        let inv = s
            .create_inventory(
                &NewInventory {
                    name: "i".into(),
                    ..NewInventory::default()
                },
                &old,
            )
            .await
            .unwrap()
            .unwrap();
        let hosts: Vec<String> = (0..1200).map(|i| format!("h{i}")).collect();
        let new = content(&serde_json::json!({"big": {"hosts": hosts}}).to_string());
        assert!(
            s.replace_inventory_content(inv.id, &new, Some(7))
                .await
                .unwrap()
        );
        let after = s.inventory(inv.id).await.unwrap().unwrap();
        assert_eq!((after.total_hosts, after.total_groups), (1200, 1));
        assert_eq!(after.last_update_id, Some(7));
        assert_eq!(s.inventory_content(inv.id).await.unwrap().unwrap(), new);
        assert!(
            !s.replace_inventory_content(inv.id + 1, &new, None)
                .await
                .unwrap()
        );
    }
}
