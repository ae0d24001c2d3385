//! Every migration's `down.sql` reverses its `up.sql`: after up + down the schema is exactly
//! what it was before, on the backend under test.

use diesel::migration::MigrationSource;
use diesel::prelude::*;
use diesel::sql_types::Text;
use diesel_migrations::MigrationHarness;
use mindo_bulk::storage::{migrations, Db, DbConnection};
use mindo_bulk::with_backend;

use crate::helpers::TestDatabase;

#[derive(QueryableByName)]
struct Line {
    #[diesel(sql_type = Text)]
    line: String,
}

fn schema(conn: &mut DbConnection) -> Vec<String> {
    let sql = match conn {
        DbConnection::Sqlite(_) => {
            "SELECT type || ' ' || name || ' ' || COALESCE(sql, '') AS line FROM sqlite_master \
             WHERE name NOT LIKE 'sqlite_%' AND name <> '__diesel_schema_migrations' ORDER BY line"
        }
        DbConnection::Postgres(_) => {
            "SELECT line FROM ( \
               SELECT 'column ' || table_name || '.' || column_name || ' ' || data_type || ' ' \
                      || is_nullable || ' ' || COALESCE(column_default, '') AS line \
               FROM information_schema.columns WHERE table_schema = 'public' \
                 AND table_name <> '__diesel_schema_migrations' \
               UNION ALL \
               SELECT 'index ' || indexdef FROM pg_indexes WHERE schemaname = 'public' \
                 AND tablename <> '__diesel_schema_migrations' \
               UNION ALL \
               SELECT 'constraint ' || conname || ' ' || pg_get_constraintdef(oid) \
               FROM pg_constraint WHERE connamespace = 'public'::regnamespace \
                 AND conname NOT LIKE '__diesel%' \
             ) s ORDER BY line"
        }
    };
    let lines: Vec<Line> = with_backend!(conn, |c| diesel::sql_query(sql).load(c)).unwrap();
    lines.into_iter().map(|l| l.line).collect()
}

/// The migrations of the backend under test.
fn migrations_of(database: &TestDatabase) -> diesel_migrations::EmbeddedMigrations {
    if database.is_postgres() {
        migrations::POSTGRES
    } else {
        migrations::SQLITE
    }
}

#[test]
fn every_down_reverses_its_up() {
    let database = TestDatabase::create();
    let db = Db::connect(database.url(), 1).unwrap();
    let mut pooled = db.get().unwrap();
    let conn: &mut DbConnection = &mut pooled;
    let set = || migrations_of(&database);
    let total = MigrationSource::<diesel::sqlite::Sqlite>::migrations(&set())
        .unwrap()
        .len();
    assert!(total > 0);
    for step in 0..total {
        let before = schema(conn);
        conn.run_next_migration(set()).unwrap();
        assert_ne!(schema(conn), before, "migration {step} changed nothing");
        conn.revert_last_migration(set()).unwrap();
        assert_eq!(
            schema(conn),
            before,
            "migration {step}: down.sql does not reverse up.sql"
        );
        conn.run_next_migration(set()).unwrap();
    }
    assert!(conn.pending_migrations(set()).unwrap().is_empty());
}

#[test]
fn both_trees_have_the_same_versions() {
    let names = |set| {
        MigrationSource::<diesel::sqlite::Sqlite>::migrations(&set)
            .unwrap()
            .iter()
            .map(|m| m.name().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(migrations::SQLITE), names(migrations::POSTGRES));
}

#[derive(QueryableByName, Debug, PartialEq)]
struct KeptMessage {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    state: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    wamid: Option<String>,
}

/// Dropping the foreign key from messages to bulk_sends makes SQLite's table again: every
/// row keeps its id and values, and new ids carry on after the largest.
#[test]
fn dropping_the_send_foreign_key_keeps_every_message() {
    let database = TestDatabase::create();
    let db = Db::connect(database.url(), 1).unwrap();
    let mut pooled = db.get().unwrap();
    let conn: &mut DbConnection = &mut pooled;
    let set = || migrations_of(&database);
    let names: Vec<String> = MigrationSource::<diesel::sqlite::Sqlite>::migrations(&set())
        .unwrap()
        .iter()
        .map(|m| m.name().to_string())
        .collect();
    let at = names
        .iter()
        .position(|n| n.ends_with("_messages_without_send_foreign_key"))
        .expect("the migration exists");
    for _ in 0..at {
        conn.run_next_migration(set()).unwrap();
    }
    // The messages' send is not stored: the key is switched off while they are written.
    let off = match conn {
        DbConnection::Sqlite(_) => "PRAGMA foreign_keys = OFF",
        DbConnection::Postgres(_) => "SET session_replication_role = replica",
    };
    let insert = "INSERT INTO messages (id, bulk_send_id, seq, recipient, variables, \
                  button_variables, state, next_attempt_at, wamid) VALUES \
                  (41, 's', 0, '+34600000001', '{}', '{}', 'sent', 5, 'wamid.1'), \
                  (42, 's', 1, '+34600000002', '{}', '{}', 'pending', 5, NULL)";
    with_backend!(conn, |c| {
        diesel::sql_query(off).execute(c).unwrap();
        diesel::sql_query(insert).execute(c).unwrap();
    });
    conn.run_next_migration(set()).unwrap();
    let read = "SELECT id, state, wamid FROM messages ORDER BY id";
    let kept: Vec<KeptMessage> = with_backend!(conn, |c| diesel::sql_query(read).load(c)).unwrap();
    assert_eq!(
        kept,
        vec![
            KeptMessage {
                id: 41,
                state: "sent".into(),
                wamid: Some("wamid.1".into())
            },
            KeptMessage {
                id: 42,
                state: "pending".into(),
                wamid: None
            },
        ]
    );
    if let DbConnection::Sqlite(_) = conn {
        let next = "INSERT INTO messages (bulk_send_id, seq, recipient, variables, \
                    button_variables, state, next_attempt_at) \
                    VALUES ('s', 2, '+34600000003', '{}', '{}', 'pending', 5) RETURNING id, state, wamid";
        let added: Vec<KeptMessage> =
            with_backend!(conn, |c| diesel::sql_query(next).load(c)).unwrap();
        assert_eq!(
            added[0].id, 43,
            "AUTOINCREMENT carries on after the largest id"
        );
    }
}
