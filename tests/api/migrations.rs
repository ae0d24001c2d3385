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

#[test]
fn every_down_reverses_its_up() {
    let database = TestDatabase::create();
    let db = Db::connect(database.url(), 1).unwrap();
    let mut pooled = db.get().unwrap();
    let conn: &mut DbConnection = &mut pooled;
    let set = || {
        if database.is_postgres() {
            migrations::POSTGRES
        } else {
            migrations::SQLITE
        }
    };
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
