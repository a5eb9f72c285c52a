//! The store's SQL surface: one query API over the two engines, so every statement is written
//! once.
//!
//! - Inside a write transaction the statements run on a [`Tx`]. On SQLite that is the writer
//!   thread's own `rusqlite` connection, called synchronously: a statement costs SQLite's few
//!   microseconds, with no hop to another thread and back. On PostgreSQL it is a sqlx
//!   transaction on the pool.
//! - Reads outside a transaction run on the read pool: on SQLite, `rusqlite` connections called
//!   synchronously on the caller's thread (an indexed read costs microseconds, less than handing
//!   it to another thread); on PostgreSQL, the sqlx pool.
//!
//! Parameters are written `$1`, `$2`… in both dialects. Values cross the boundary as [`Value`]s;
//! rows come back as [`Row`]s read by column position.

use super::readers::LitePool;
pub use super::value::{Decode, Encode, Kind, Value};
use super::StoreError;
use sqlx::any::{AnyRow, AnyTypeInfoKind};
use sqlx::{Any, AnyPool, Row as _, ValueRef as _};

/// One row of a result: its values in the order of the `SELECT`, found by column name.
#[derive(Debug, Clone)]
pub struct Row {
    columns: Columns,
    values: Vec<Value>,
}

/// The column names of a result, shared by its rows.
type Columns = std::sync::Arc<[Box<str>]>;

impl Row {
    /// The value of the column named `name` (as the `SELECT` names it) as a `T`.
    pub fn get<T: Decode>(&self, name: &str) -> Result<T, StoreError> {
        let index = self
            .columns
            .iter()
            .position(|c| c.eq_ignore_ascii_case(name))
            .ok_or_else(|| StoreError::Corrupt(format!("no column {name} in the row")))?;
        let v = &self.values[index];
        T::decode(v).ok_or_else(|| {
            StoreError::Corrupt(format!("column {name} is not {} ({})", T::NAME, kind(v)))
        })
    }

    /// The value of column `index` (from 0) as a `T`.
    pub(super) fn try_get<T: Decode>(&self, index: usize) -> Result<T, StoreError> {
        let v = self
            .values
            .get(index)
            .ok_or_else(|| StoreError::Corrupt(format!("no column {index} in the row")))?;
        T::decode(v).ok_or_else(|| {
            StoreError::Corrupt(format!("column {index} is not {} ({})", T::NAME, kind(v)))
        })
    }

    /// Reads every column of a sqlx row by the type the database gave it.
    fn from_any(row: AnyRow) -> Result<Self, StoreError> {
        use sqlx::Column as _;
        let columns: Columns = row.columns().iter().map(|c| c.name().into()).collect();
        let mut values = Vec::with_capacity(row.len());
        for i in 0..row.len() {
            let raw = row.try_get_raw(i)?;
            let kind = raw.type_info().kind();
            let value = if raw.is_null() {
                Value::Null(Kind::Text)
            } else {
                match kind {
                    AnyTypeInfoKind::Bool => Value::Bool(row.try_get(i)?),
                    AnyTypeInfoKind::SmallInt
                    | AnyTypeInfoKind::Integer
                    | AnyTypeInfoKind::BigInt => Value::Int(row.try_get(i)?),
                    AnyTypeInfoKind::Real => Value::Real(row.try_get::<f32, _>(i)?.into()),
                    AnyTypeInfoKind::Double => Value::Real(row.try_get(i)?),
                    AnyTypeInfoKind::Text => Value::Text(row.try_get(i)?),
                    AnyTypeInfoKind::Blob => Value::Blob(row.try_get(i)?),
                    AnyTypeInfoKind::Null => Value::Null(Kind::Text),
                }
            };
            values.push(value);
        }
        Ok(Self { columns, values })
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null(_) => "null",
        Value::Bool(_) => "a boolean",
        Value::Int(_) => "an integer",
        Value::Real(_) => "a number",
        Value::Text(_) => "text",
        Value::Blob(_) => "bytes",
    }
}

/// A write transaction: the closure given to [`super::Store::transact`] runs its statements on it.
pub struct Tx {
    inner: TxInner,
}

enum TxInner {
    /// PostgreSQL: a sqlx transaction on the pool.
    Pg(sqlx::Transaction<'static, Any>),
    /// SQLite: the writer thread's connection, inside the transaction the writer opened.
    Lite(rusqlite::Connection),
}

impl std::fmt::Debug for Tx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx")
            .field("dialect", &self.dialect())
            .finish()
    }
}

impl Tx {
    pub(super) fn pg(tx: sqlx::Transaction<'static, Any>) -> Self {
        Self {
            inner: TxInner::Pg(tx),
        }
    }

    pub(super) fn lite(conn: rusqlite::Connection) -> Self {
        Self {
            inner: TxInner::Lite(conn),
        }
    }

    pub(super) fn into_pg(self) -> Option<sqlx::Transaction<'static, Any>> {
        match self.inner {
            TxInner::Pg(tx) => Some(tx),
            TxInner::Lite(_) => None,
        }
    }

    /// The SQLite connection (the writer uses it for `BEGIN`, savepoints and `COMMIT`).
    pub(super) fn lite_conn(&self) -> Option<&rusqlite::Connection> {
        match &self.inner {
            TxInner::Lite(c) => Some(c),
            TxInner::Pg(_) => None,
        }
    }

    pub fn dialect(&self) -> super::Dialect {
        match self.inner {
            TxInner::Pg(_) => super::Dialect::Postgres,
            TxInner::Lite(_) => super::Dialect::Sqlite,
        }
    }
}

/// Where a statement runs: a write transaction or the read pool.
pub(super) enum Exec<'e> {
    Tx(&'e mut Tx),
    Pool(&'e AnyPool),
    Lite(&'e LitePool),
}

impl<'e> From<&'e super::Reader> for Exec<'e> {
    fn from(reader: &'e super::Reader) -> Self {
        match reader {
            super::Reader::Pool(pool) => Exec::Pool(pool),
            super::Reader::Lite(pool) => Exec::Lite(pool),
        }
    }
}

impl<'e> From<&'e mut Tx> for Exec<'e> {
    fn from(tx: &'e mut Tx) -> Self {
        Exec::Tx(tx)
    }
}
impl<'e> From<&'e AnyPool> for Exec<'e> {
    fn from(pool: &'e AnyPool) -> Self {
        Exec::Pool(pool)
    }
}

/// A statement and its parameters: `query("… $1 …").bind(x).execute(tx).await?`.
#[must_use = "a query does nothing until it is executed or fetched"]
pub struct Query<'q> {
    sql: &'q str,
    args: Vec<Value>,
}

pub fn query(sql: &str) -> Query<'_> {
    Query {
        sql,
        args: Vec::new(),
    }
}

/// What an `execute` did.
#[derive(Debug, Clone, Copy)]
pub struct Done {
    rows_affected: u64,
}

impl Done {
    pub fn rows_affected(&self) -> u64 {
        self.rows_affected
    }
}

impl<'q> Query<'q> {
    pub fn bind(mut self, value: impl Encode) -> Self {
        self.args.push(value.encode());
        self
    }

    pub async fn execute<'e>(self, on: impl Into<Exec<'e>>) -> Result<Done, StoreError> {
        let rows_affected = match on.into() {
            Exec::Tx(Tx {
                inner: TxInner::Lite(conn),
            }) => lite::execute(conn, self.sql, &self.args)?,
            Exec::Tx(Tx {
                inner: TxInner::Pg(tx),
            }) => self.sqlx().execute(&mut **tx).await?.rows_affected(),
            Exec::Pool(pool) => self.sqlx().execute(pool).await?.rows_affected(),
            Exec::Lite(pool) => self.on_reader(pool, lite::execute).await?,
        };
        Ok(Done { rows_affected })
    }

    pub async fn fetch_all<'e>(self, on: impl Into<Exec<'e>>) -> Result<Vec<Row>, StoreError> {
        match on.into() {
            Exec::Tx(Tx {
                inner: TxInner::Lite(conn),
            }) => lite::fetch(conn, self.sql, &self.args, usize::MAX),
            Exec::Tx(Tx {
                inner: TxInner::Pg(tx),
            }) => rows(self.sqlx().fetch_all(&mut **tx).await?),
            Exec::Pool(pool) => rows(self.sqlx().fetch_all(pool).await?),
            Exec::Lite(pool) => {
                self.on_reader(pool, |c, sql, args| lite::fetch(c, sql, args, usize::MAX))
                    .await
            }
        }
    }

    pub async fn fetch_optional<'e>(
        self,
        on: impl Into<Exec<'e>>,
    ) -> Result<Option<Row>, StoreError> {
        match on.into() {
            Exec::Tx(Tx {
                inner: TxInner::Lite(conn),
            }) => Ok(lite::fetch(conn, self.sql, &self.args, 1)?.pop()),
            Exec::Tx(Tx {
                inner: TxInner::Pg(tx),
            }) => self
                .sqlx()
                .fetch_optional(&mut **tx)
                .await?
                .map(Row::from_any)
                .transpose(),
            Exec::Pool(pool) => self
                .sqlx()
                .fetch_optional(pool)
                .await?
                .map(Row::from_any)
                .transpose(),
            Exec::Lite(pool) => Ok(self
                .on_reader(pool, |c, sql, args| lite::fetch(c, sql, args, 1))
                .await?
                .pop()),
        }
    }

    pub async fn fetch_one<'e>(self, on: impl Into<Exec<'e>>) -> Result<Row, StoreError> {
        self.fetch_optional(on)
            .await?
            .ok_or(StoreError::Sqlx(sqlx::Error::RowNotFound))
    }

    /// Runs the statement on one of SQLite's reader threads.
    async fn on_reader<T: Send + 'static>(
        self,
        pool: &LitePool,
        run: fn(&rusqlite::Connection, &str, &[Value]) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let (sql, args) = (self.sql.to_string(), self.args);
        pool.read(move |c| run(c, &sql, &args)).await
    }

    fn sqlx(&self) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>> {
        let mut q = sqlx::query(self.sql);
        for v in &self.args {
            q = match v.clone() {
                Value::Null(Kind::Bool) => q.bind(None::<bool>),
                Value::Null(Kind::Int) => q.bind(None::<i64>),
                Value::Null(Kind::Real) => q.bind(None::<f64>),
                Value::Null(Kind::Text) => q.bind(None::<String>),
                Value::Null(Kind::Blob) => q.bind(None::<Vec<u8>>),
                Value::Bool(b) => q.bind(b),
                Value::Int(i) => q.bind(i),
                Value::Real(f) => q.bind(f),
                Value::Text(s) => q.bind(s),
                Value::Blob(b) => q.bind(b),
            };
        }
        q
    }
}

fn rows(rows: Vec<AnyRow>) -> Result<Vec<Row>, StoreError> {
    rows.into_iter().map(Row::from_any).collect()
}

/// A query whose rows have one column of interest, the first: `query_scalar::<i64>("SELECT COUNT(*) …")`.
#[must_use = "a query does nothing until it is fetched"]
pub struct QueryScalar<'q, T> {
    query: Query<'q>,
    _t: std::marker::PhantomData<fn() -> T>,
}

pub fn query_scalar<T: Decode>(sql: &str) -> QueryScalar<'_, T> {
    QueryScalar {
        query: query(sql),
        _t: std::marker::PhantomData,
    }
}

impl<T: Decode> QueryScalar<'_, T> {
    pub fn bind(mut self, value: impl Encode) -> Self {
        self.query = self.query.bind(value);
        self
    }

    pub async fn fetch_all<'e>(self, on: impl Into<Exec<'e>>) -> Result<Vec<T>, StoreError> {
        self.query
            .fetch_all(on)
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect()
    }

    pub async fn fetch_optional<'e>(
        self,
        on: impl Into<Exec<'e>>,
    ) -> Result<Option<T>, StoreError> {
        self.query
            .fetch_optional(on)
            .await?
            .map(|r| r.try_get(0))
            .transpose()
    }

    pub async fn fetch_one<'e>(self, on: impl Into<Exec<'e>>) -> Result<T, StoreError> {
        self.query.fetch_one(on).await?.try_get(0)
    }
}

/// The SQLite side: statements prepared once per connection (cached) and run synchronously.
pub(super) mod lite {
    use super::{Row, StoreError, Value};
    use rusqlite::types::{ToSqlOutput, ValueRef};
    use rusqlite::Connection;

    pub fn execute(conn: &Connection, sql: &str, args: &[Value]) -> Result<u64, StoreError> {
        let mut stmt = conn.prepare_cached(sql)?;
        bind(&mut stmt, args)?;
        // `raw_execute` refuses a statement that returns rows; such a statement (a `RETURNING`)
        // is stepped to its end instead.
        if stmt.column_count() > 0 {
            let mut rows = stmt.raw_query();
            while rows.next()?.is_some() {}
            return Ok(conn.changes());
        }
        Ok(stmt.raw_execute()? as u64)
    }

    pub fn fetch(
        conn: &Connection,
        sql: &str,
        args: &[Value],
        limit: usize,
    ) -> Result<Vec<Row>, StoreError> {
        let mut stmt = conn.prepare_cached(sql)?;
        bind(&mut stmt, args)?;
        let names: super::Columns = stmt.column_names().into_iter().map(Into::into).collect();
        let columns = names.len();
        let mut rows = stmt.raw_query();
        let mut out = Vec::new();
        while out.len() < limit {
            let Some(r) = rows.next()? else { break };
            let mut values = Vec::with_capacity(columns);
            for i in 0..columns {
                values.push(match r.get_ref(i)? {
                    ValueRef::Null => Value::Null(super::Kind::Text),
                    ValueRef::Integer(i) => Value::Int(i),
                    ValueRef::Real(f) => Value::Real(f),
                    ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Blob(b) => Value::Blob(b.to_vec()),
                });
            }
            out.push(Row {
                columns: names.clone(),
                values,
            });
        }
        Ok(out)
    }

    /// Binds `$N` (and `?N`) to `args[N - 1]`, a bare `?` to the next argument in order.
    fn bind(stmt: &mut rusqlite::CachedStatement<'_>, args: &[Value]) -> Result<(), StoreError> {
        let count = stmt.parameter_count();
        for i in 1..=count {
            let n = match stmt.parameter_name(i) {
                Some(name) => name[1..]
                    .parse::<usize>()
                    .map_err(|_| StoreError::Corrupt(format!("parameter {name} is not $N")))?,
                None => i,
            };
            let value = args
                .get(n - 1)
                .ok_or_else(|| StoreError::Corrupt(format!("no value bound for parameter ${n}")))?;
            let out = match value {
                Value::Null(_) => ToSqlOutput::Owned(rusqlite::types::Value::Null),
                Value::Bool(b) => ToSqlOutput::Owned(rusqlite::types::Value::Integer(*b as i64)),
                Value::Int(i) => ToSqlOutput::Owned(rusqlite::types::Value::Integer(*i)),
                Value::Real(f) => ToSqlOutput::Owned(rusqlite::types::Value::Real(*f)),
                Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
                Value::Blob(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
            };
            stmt.raw_bind_parameter(i, out)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
