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

/// Applies every migration before the one whose name ends with `suffix`.
fn migrate_to_before(conn: &mut DbConnection, database: &TestDatabase, suffix: &str) {
    let names: Vec<String> =
        MigrationSource::<diesel::sqlite::Sqlite>::migrations(&migrations_of(database))
            .unwrap()
            .iter()
            .map(|m| m.name().to_string())
            .collect();
    let at = names
        .iter()
        .position(|n| n.ends_with(suffix))
        .expect("the migration exists");
    for _ in 0..at {
        conn.run_next_migration(migrations_of(database)).unwrap();
    }
}

/// The statement that switches foreign key checks off for this connection.
fn foreign_keys_off(conn: &DbConnection) -> &'static str {
    match conn {
        DbConnection::Sqlite(_) => "PRAGMA foreign_keys = OFF",
        DbConnection::Postgres(_) => "SET session_replication_role = replica",
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
    migrate_to_before(conn, &database, "_messages_without_send_foreign_key");
    // The messages' send is not stored: the key is switched off while they are written.
    let off = foreign_keys_off(conn);
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

#[derive(QueryableByName, Debug, PartialEq)]
struct KeyedMessage {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    send: String,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    seq: i32,
}

/// Naming a message's send by a number: every send already stored gets its own key, every
/// message the key of its send, with its id and position kept; a new send gets a key of its
/// own after them.
#[test]
fn the_send_key_replaces_the_send_id_in_messages() {
    let database = TestDatabase::create();
    let db = Db::connect(database.url(), 1).unwrap();
    let mut pooled = db.get().unwrap();
    let conn: &mut DbConnection = &mut pooled;
    let set = || migrations_of(&database);
    migrate_to_before(conn, &database, "_messages_send_key");
    // The sends' tenant, key, number and template are not stored: foreign keys are
    // switched off while the rows are written.
    let off = foreign_keys_off(conn);
    let send = |id: &str| {
        format!(
            "INSERT INTO bulk_sends (id, tenant_id, api_key_id, phone_number_id, template_id, \
             task_id, status, total_submitted, unique_recipients, invalid_recipients, \
             pending_count, estimated_time_minutes, created_at) \
             VALUES ('{id}', 1, 1, 1, 1, 't', 'PROCESSING', 2, 2, 0, 2, 0, 0)"
        )
    };
    let messages = "INSERT INTO messages (id, bulk_send_id, seq, recipient, variables, \
                    button_variables, state, next_attempt_at) VALUES \
                    (7, 'a', 0, '+34600000001', '{}', '{}', 'pending', 5), \
                    (8, 'b', 0, '+34600000002', '{}', '{}', 'pending', 5), \
                    (9, 'a', 1, '+34600000003', '{}', '{}', 'sent', 5)";
    with_backend!(conn, |c| {
        diesel::sql_query(off).execute(c).unwrap();
        diesel::sql_query(send("a")).execute(c).unwrap();
        diesel::sql_query(send("b")).execute(c).unwrap();
        diesel::sql_query(messages).execute(c).unwrap();
    });
    conn.run_next_migration(set()).unwrap();
    let read = "SELECT m.id, b.id AS send, m.seq FROM messages AS m \
                JOIN bulk_sends AS b ON b.send_key = m.send_key ORDER BY m.id";
    let kept: Vec<KeyedMessage> = with_backend!(conn, |c| diesel::sql_query(read).load(c)).unwrap();
    let message = |id, send: &str, seq| KeyedMessage {
        id,
        send: send.into(),
        seq,
    };
    assert_eq!(
        kept,
        vec![message(7, "a", 0), message(8, "b", 0), message(9, "a", 1)]
    );
    // Later migrations, then a send created as the service creates one: a key of its own.
    conn.run_pending_migrations(set()).unwrap();
    use mindo_bulk::storage::sends::{self, NewMessage, NewSend};
    let new = NewSend {
        id: "c".into(),
        tenant_id: 1,
        api_key_id: 1,
        phone_number_id: 1,
        template_id: 1,
        task_id: "t".into(),
        total_submitted: 1,
        invalid_recipients: 0,
        estimated_time_minutes: 0.0,
        callback_url: None,
        scheduled_at: None,
        created_at: 0,
    };
    let recipient = NewMessage {
        recipient: "+34600000004".into(),
        variables: "{}".into(),
        button_variables: "{}".into(),
        suppressed: None,
    };
    mindo_bulk::storage::conn::write_transaction(conn, |c| {
        sends::insert_send(c, &new, vec![recipient], 5)
    })
    .unwrap();
    use mindo_bulk::storage::schema::bulk_sends;
    let keys: Vec<i64> = bulk_sends::table
        .order(bulk_sends::id)
        .select(bulk_sends::send_key)
        .load(conn)
        .unwrap();
    let (a, b, c) = (keys[0], keys[1], keys[2]);
    assert!(a != b && c > a && c > b, "keys {keys:?}");
    let (_, listed) = sends::messages_page(conn, "c", None, 0, 10).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].recipient, "+34600000004");
    let (_, listed) = sends::messages_page(conn, "a", None, 0, 10).unwrap();
    assert_eq!(
        listed.iter().map(|m| (m.id, m.seq)).collect::<Vec<_>>(),
        vec![(7, 0), (9, 1)]
    );
}
