//! inventory (`/api/management/v1/inventory`): devices with their
//! attributes, attribute filters, static groups
//! (`spec/mender-management-api.md` section 4).
//!
//! A device's attributes are built from its `devices` row: `identity`
//! (its identity data and `status`), `inventory` (what it uploaded),
//! `system` (`group`, `created_ts`, `updated_ts`, `check_in_time`). So that
//! filters run in SQL, identity and inventory values are also indexed in
//! `device_attributes`, one row per value (per element of an array value),
//! kept in step by the writers of those columns.

use std::collections::BTreeMap;

use serde_json::Value;
use sqlx::{Any, Transaction};

use crate::db::{self, RowExt, Sql};
use crate::error::ApiError;

/// Rows for the values of one attribute: (text, number).
fn index_values(v: &Value) -> Vec<(String, Option<f64>)> {
    match v {
        Value::String(s) => vec![(s.clone(), None)],
        Value::Number(n) => vec![(n.to_string(), n.as_f64())],
        Value::Array(items) => items.iter().flat_map(index_values).collect(),
        other => vec![(other.to_string(), None)],
    }
}

/// Replace the indexed values of one scope of a device.
pub(crate) async fn index_scope(
    tx: &mut Transaction<'static, Any>,
    device_id: &str,
    scope: &str,
    attrs: &BTreeMap<String, Value>,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM device_attributes WHERE device_id = $1 AND scope = $2")
        .bind(device_id)
        .bind(scope)
        .execute(&mut **tx)
        .await?;
    let rows: Vec<(&str, String, Option<f64>)> = attrs
        .iter()
        .flat_map(|(name, v)| {
            index_values(v)
                .into_iter()
                .map(move |(t, n)| (name.as_str(), t, n))
        })
        .collect();
    // 5 values a row; 200 rows keep a statement far below both databases'
    // placeholder limits.
    for chunk in rows.chunks(200) {
        let mut sql = Sql::new(
            "INSERT INTO device_attributes (device_id, scope, name, value_text, value_num) VALUES ",
        );
        let mut first = true;
        for (name, text, num) in chunk {
            let marks = [
                sql.arg(device_id),
                sql.arg(scope),
                sql.arg(*name),
                sql.arg(text.clone()),
                match num {
                    Some(n) => sql.arg(*n),
                    None => "NULL".to_owned(),
                },
            ];
            if !first {
                sql.push(", ");
            }
            first = false;
            sql.push(&format!("({})", marks.join(", ")));
        }
        sql.push(" ON CONFLICT DO NOTHING");
        sql.query().execute(&mut **tx).await?;
    }
    Ok(())
}

/// Index a new device's identity data.
pub(crate) async fn index_identity(
    tx: &mut Transaction<'static, Any>,
    device_id: &str,
    identity: &BTreeMap<String, Value>,
) -> Result<(), ApiError> {
    Ok(index_scope(tx, device_id, "identity", identity).await?)
}

fn parse_map(s: &str) -> BTreeMap<String, Value> {
    serde_json::from_str(s).unwrap_or_default()
}

/// Index every device once (databases made before the index existed);
/// a `settings` mark says it is done.
pub async fn backfill(pool: &db::Pool) -> Result<(), sqlx::Error> {
    if db::setting(pool, "attributes_indexed").await?.is_some() {
        return Ok(());
    }
    let rows = sqlx::query("SELECT id, identity, inventory FROM devices")
        .fetch_all(pool)
        .await?;
    for r in &rows {
        let id = r.text("id")?;
        let mut tx = pool.begin().await?;
        index_scope(&mut tx, &id, "identity", &parse_map(&r.text("identity")?)).await?;
        index_scope(&mut tx, &id, "inventory", &parse_map(&r.text("inventory")?)).await?;
        tx.commit().await?;
    }
    db::setting_or_insert(pool, "attributes_indexed", "1").await?;
    Ok(())
}
