//! Several daemons on one PostgreSQL: node heartbeats, one lease per portfolio, fenced claims,
//! and the change feed through which any node tells a send's owner what it changed.
//!
//! Every time here is the database's clock (`now()`), never a node's: nodes disagree about
//! time, the database is one. SQLite is a single node: these functions are never called on it
//! (the engine's `Leases` is in single-node mode there), and the few that may be (status, the
//! feed) answer as for an empty cluster.

use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Nullable, Text};

use super::schema::{bulk_sends, business_accounts, phone_numbers};
use super::{DbConnection, StorageError};

/// A lease this node holds after a heartbeat: the portfolio and the epoch that fences it.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct HeldLease {
    #[diesel(sql_type = Text)]
    pub portfolio_id: String,
    #[diesel(sql_type = BigInt)]
    pub epoch: i64,
    /// Who held it before this acquisition (`None` for a free or renewed lease).
    #[diesel(sql_type = Nullable<Text>)]
    pub previous_owner: Option<String>,
}

/// What one heartbeat found, for the lease keeper to act on.
#[derive(Debug, Clone, Default)]
pub struct Heartbeat {
    /// Every lease this node holds now (renewed or just acquired).
    pub held: Vec<HeldLease>,
    /// Of those, the ones acquired by this heartbeat.
    pub acquired: Vec<HeldLease>,
    /// How many leases this node holds beyond its fair share (a node joined): it should hand
    /// this many over.
    pub surplus: usize,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

fn pg(conn: &mut DbConnection) -> Option<&mut diesel::PgConnection> {
    match conn {
        DbConnection::Postgres(c) => Some(c),
        DbConnection::Sqlite(_) => None,
    }
}

/// This process among the cluster's nodes: its name and the instance id it drew at start (a
/// name is held by one live process at a time).
#[derive(Debug, Clone)]
pub struct Member {
    pub name: String,
    pub instance: String,
    pub version: String,
    pub bind: String,
}

/// Joins the cluster under `node.name`, unless a live process holds that name (it has not
/// left, its heartbeat is within `ttl_ms` and its keeper's server backend is still
/// connected): then `false`, and nothing is written. A name whose process left, went silent
/// or died is taken over; the caller then releases the leases left under it, to be acquired
/// again under new epochs that fence whatever that process may still claim.
pub fn join(conn: &mut DbConnection, node: &Member, ttl_ms: i64) -> Result<bool, StorageError> {
    match pg(conn) {
        Some(c) => hold_name(c, node, ttl_ms, true),
        None => Ok(true),
    }
}

/// Records the node as alive if the name is this process's (or, when `joining`, free).
fn hold_name(
    c: &mut diesel::PgConnection,
    node: &Member,
    ttl_ms: i64,
    joining: bool,
) -> Result<bool, StorageError> {
    let written = diesel::sql_query(
        "INSERT INTO cluster_nodes (name, version, bind, instance, backend_pid) \
         VALUES ($1, $2, $3, $4, pg_backend_pid()) \
         ON CONFLICT (name) DO UPDATE SET heartbeat_at = now(), version = $2, bind = $3, \
             instance = $4, backend_pid = pg_backend_pid(), left_at = NULL, \
             started_at = CASE WHEN cluster_nodes.instance = $4 \
                 THEN cluster_nodes.started_at ELSE now() END \
         WHERE cluster_nodes.instance = $4 OR ($5 AND (cluster_nodes.left_at IS NOT NULL \
             OR cluster_nodes.heartbeat_at <= now() - $6 * interval '1 millisecond' \
             OR NOT EXISTS (SELECT 1 FROM pg_stat_activity a \
                            WHERE a.pid = cluster_nodes.backend_pid)))",
    )
    .bind::<Text, _>(&node.name)
    .bind::<Text, _>(&node.version)
    .bind::<Text, _>(&node.bind)
    .bind::<Text, _>(&node.instance)
    .bind::<diesel::sql_types::Bool, _>(joining)
    .bind::<BigInt, _>(ttl_ms)
    .execute(c)?;
    Ok(written == 1)
}

/// One heartbeat of `node`, in the caller's transaction: records the node as alive, makes
/// sure every portfolio has a lease row, renews the leases the node still holds (an expired
/// one is not renewed: someone else may have taken it; it can only be acquired again, under
/// a new epoch), and acquires free or expired leases up to the node's fair share of the live
/// nodes, leaving alone the `cooling` ones (this node just handed them over).
pub fn heartbeat(
    conn: &mut DbConnection,
    node: &Member,
    ttl_ms: i64,
    cooling: &[String],
) -> Result<Heartbeat, StorageError> {
    let Some(c) = pg(conn) else {
        return Ok(Heartbeat::default());
    };
    if !hold_name(c, node, ttl_ms, false)? {
        return Err(StorageError::NameTaken(node.name.clone()));
    }
    let node = node.name.as_str();
    diesel::sql_query(
        "INSERT INTO portfolio_leases (portfolio_id) \
         SELECT DISTINCT portfolio_id FROM business_accounts ON CONFLICT DO NOTHING",
    )
    .execute(c)?;
    let mut held: Vec<HeldLease> = diesel::sql_query(
        "UPDATE portfolio_leases SET expires_at = now() + $2 * interval '1 millisecond' \
         WHERE owner = $1 AND expires_at > now() \
         RETURNING portfolio_id, epoch, NULL::text AS previous_owner",
    )
    .bind::<Text, _>(node)
    .bind::<BigInt, _>(ttl_ms)
    .load(c)?;
    let live: Count = diesel::sql_query(
        "SELECT count(*) AS n FROM cluster_nodes \
         WHERE left_at IS NULL AND heartbeat_at > now() - $1 * interval '1 millisecond'",
    )
    .bind::<BigInt, _>(ttl_ms)
    .get_result(c)?;
    let total: Count =
        diesel::sql_query("SELECT count(*) AS n FROM portfolio_leases").get_result(c)?;
    let share = fair_share(total.n, live.n);
    let mut acquired = Vec::new();
    if held.len() < share {
        // Rows a claim is reading (`FOR KEY SHARE`) are skipped: their owner is still at work.
        acquired = diesel::sql_query(
            "WITH free AS ( \
                 SELECT portfolio_id, owner FROM portfolio_leases \
                 WHERE (owner IS NULL OR expires_at <= now()) AND portfolio_id <> ALL($4) \
                 ORDER BY expires_at, portfolio_id LIMIT $3 \
                 FOR UPDATE SKIP LOCKED) \
             UPDATE portfolio_leases AS l SET owner = $1, epoch = l.epoch + 1, \
                 expires_at = now() + $2 * interval '1 millisecond', acquired_at = now() \
             FROM free WHERE l.portfolio_id = free.portfolio_id \
             RETURNING l.portfolio_id, l.epoch, free.owner AS previous_owner",
        )
        .bind::<Text, _>(node)
        .bind::<BigInt, _>(ttl_ms)
        .bind::<BigInt, _>(i64::try_from(share - held.len()).unwrap_or(i64::MAX))
        .bind::<Array<Text>, _>(cooling)
        .load(c)?;
        held.extend(acquired.iter().cloned());
    }
    // Balance: nobody holds more than its fair share, nor more than one lease beyond the
    // live node that holds fewest (a node that just joined holds none: others hand it some).
    let fewest: Count = diesel::sql_query(
        "SELECT COALESCE(min(held), 0) AS n FROM ( \
             SELECT count(l.portfolio_id) AS held FROM cluster_nodes n \
             LEFT JOIN portfolio_leases l ON l.owner = n.name AND l.expires_at > now() \
             WHERE n.left_at IS NULL AND n.heartbeat_at > now() - $1 * interval '1 millisecond' \
             GROUP BY n.name) h",
    )
    .bind::<BigInt, _>(ttl_ms)
    .get_result(c)?;
    let surplus = surplus(held.len(), share, fewest.n);
    Ok(Heartbeat {
        held,
        acquired,
        surplus,
    })
}

/// A node's fair share of `total` leases among `live` nodes: rounded up, so the shares cover
/// every lease; at least one node (this one) is alive.
pub fn fair_share(total: i64, live: i64) -> usize {
    let live = live.max(1);
    usize::try_from((total + live - 1) / live).unwrap_or(0)
}

/// How many leases a node holding `held` should hand over: what it holds beyond its fair
/// `share`, or one when it holds two or more beyond the live node that holds `fewest`.
pub fn surplus(held: usize, share: usize, fewest: i64) -> usize {
    let fewest = usize::try_from(fewest).unwrap_or(0);
    let over_share = held.saturating_sub(share);
    let over_fewest = usize::from(held > fewest + 1);
    over_share.max(over_fewest)
}

/// Hands leases over: `None` releases every lease of `node` (it is leaving), otherwise those
/// of the given portfolios. A released lease is free at once for any node.
pub fn release(
    conn: &mut DbConnection,
    node: &str,
    portfolios: Option<&[String]>,
) -> Result<usize, StorageError> {
    let Some(c) = pg(conn) else { return Ok(0) };
    let n = match portfolios {
        None => diesel::sql_query(
            "UPDATE portfolio_leases SET owner = NULL, expires_at = now() WHERE owner = $1",
        )
        .bind::<Text, _>(node)
        .execute(c)?,
        Some(portfolios) => diesel::sql_query(
            "UPDATE portfolio_leases SET owner = NULL, expires_at = now() \
             WHERE owner = $1 AND portfolio_id = ANY($2)",
        )
        .bind::<Text, _>(node)
        .bind::<Array<Text>, _>(portfolios)
        .execute(c)?,
    };
    Ok(n)
}

/// The node leaves the cluster (a clean stop): it no longer counts among the live nodes.
pub fn leave(conn: &mut DbConnection, node: &str) -> Result<(), StorageError> {
    let Some(c) = pg(conn) else { return Ok(()) };
    diesel::sql_query("UPDATE cluster_nodes SET left_at = now() WHERE name = $1")
        .bind::<Text, _>(node)
        .execute(c)?;
    Ok(())
}

/// The fence of a claim, in the claim's transaction: whether `node` still holds the lease of
/// `portfolio` under `epoch`, unexpired by the database's clock. The row is locked `FOR KEY
/// SHARE` until the claim commits: a takeover takes its rows `FOR UPDATE SKIP LOCKED`, so no
/// other node can take the lease over in between (a claim that commits did so under a valid
/// lease), while the owner's own renewal, a plain `UPDATE` of other columns, never waits for
/// its claims.
pub fn lease_is_held(
    conn: &mut DbConnection,
    portfolio: &str,
    node: &str,
    epoch: i64,
) -> Result<bool, StorageError> {
    let Some(c) = pg(conn) else { return Ok(true) };
    let found: Vec<Count> = diesel::sql_query(
        "SELECT epoch AS n FROM portfolio_leases \
         WHERE portfolio_id = $1 AND owner = $2 AND epoch = $3 AND expires_at > now() \
         FOR KEY SHARE",
    )
    .bind::<Text, _>(portfolio)
    .bind::<Text, _>(node)
    .bind::<BigInt, _>(epoch)
    .load(c)?;
    Ok(!found.is_empty())
}

/// What the change feed says changed: the owner of the thing acts on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterEvent {
    /// A send was created, controlled, or changed by a webhook: its owner starts it or
    /// follows its stored phase.
    Send(String),
    /// A number's settings or state changed: its limiter reads them back.
    Number(i64),
}

impl ClusterEvent {
    fn kind_and_target(&self) -> (&'static str, String) {
        match self {
            ClusterEvent::Send(id) => ("send", id.clone()),
            ClusterEvent::Number(id) => ("number", id.to_string()),
        }
    }

    fn parse(kind: &str, target: String) -> Option<ClusterEvent> {
        match kind {
            "send" => Some(ClusterEvent::Send(target)),
            "number" => target.parse().ok().map(ClusterEvent::Number),
            _ => None,
        }
    }
}

/// Appends events to the change feed, in the caller's transaction (they are seen only if
/// what they announce commits). Nothing on SQLite, where the one node is told directly.
pub fn append_events(conn: &mut DbConnection, events: &[ClusterEvent]) -> Result<(), StorageError> {
    let Some(c) = pg(conn) else { return Ok(()) };
    if events.is_empty() {
        return Ok(());
    }
    let (kinds, targets): (Vec<&str>, Vec<String>) =
        events.iter().map(ClusterEvent::kind_and_target).unzip();
    // The insert's own time, not the transaction's start: a reader's window is measured from
    // when the row could at the earliest become visible.
    diesel::sql_query(
        "INSERT INTO cluster_events (kind, target, created_at) \
         SELECT k, t, clock_timestamp() FROM unnest($1::text[], $2::text[]) AS u(k, t)",
    )
    .bind::<Array<Text>, _>(&kinds)
    .bind::<Array<Text>, _>(&targets)
    .execute(c)?;
    Ok(())
}

#[derive(QueryableByName)]
struct EventRow {
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = Text)]
    target: String,
}

/// The events of the last `window_ms`, with their sequence numbers, oldest first.
///
/// Readers take a window rather than "after the last sequence number read": sequence numbers
/// are handed out at insert and become visible at commit, so a smaller one can appear after a
/// larger one was read. The window is far longer than any of our transactions lasts
/// (`idle_in_transaction_session_timeout` ends a stuck one); a reader remembers what it has
/// seen.
pub fn recent_events(
    conn: &mut DbConnection,
    window_ms: i64,
) -> Result<Vec<(i64, ClusterEvent)>, StorageError> {
    let Some(c) = pg(conn) else {
        return Ok(Vec::new());
    };
    let rows: Vec<EventRow> = diesel::sql_query(
        "SELECT seq, kind, target FROM cluster_events \
         WHERE created_at > clock_timestamp() - $1 * interval '1 millisecond' ORDER BY seq",
    )
    .bind::<BigInt, _>(window_ms)
    .load(c)?;
    Ok(rows
        .into_iter()
        .filter_map(|r| Some((r.seq, ClusterEvent::parse(&r.kind, r.target)?)))
        .collect())
}

/// Drops events older than `keep_ms`: every live node has read them long since.
pub fn prune_events(conn: &mut DbConnection, keep_ms: i64) -> Result<usize, StorageError> {
    let Some(c) = pg(conn) else { return Ok(0) };
    Ok(diesel::sql_query(
        "DELETE FROM cluster_events WHERE created_at < now() - $1 * interval '1 millisecond'",
    )
    .bind::<BigInt, _>(keep_ms)
    .execute(c)?)
}

/// An unsettled send with what decides who runs it: its number and that number's portfolio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendOwner {
    pub send_id: String,
    pub phone_row_id: i64,
    pub portfolio_id: String,
    pub settled: bool,
}

/// Every unsettled send with its number and portfolio, oldest first.
pub fn unsettled_send_owners(conn: &mut DbConnection) -> Result<Vec<SendOwner>, StorageError> {
    send_owners(conn, None)
}

/// One send with its number and portfolio; `None` if there is no such send.
pub fn send_owner(conn: &mut DbConnection, id: &str) -> Result<Option<SendOwner>, StorageError> {
    Ok(send_owners(conn, Some(id))?.into_iter().next())
}

fn send_owners(conn: &mut DbConnection, id: Option<&str>) -> Result<Vec<SendOwner>, StorageError> {
    let base = bulk_sends::table
        .inner_join(phone_numbers::table.on(phone_numbers::id.eq(bulk_sends::phone_number_id)))
        .inner_join(
            business_accounts::table
                .on(business_accounts::id.eq(phone_numbers::business_account_id)),
        )
        .select((
            bulk_sends::id,
            bulk_sends::phone_number_id,
            business_accounts::portfolio_id,
            bulk_sends::pending_count,
        ))
        .order(bulk_sends::created_at);
    let rows: Vec<(String, i64, String, i32)> = match id {
        Some(id) => crate::with_backend!(conn, |c| base.filter(bulk_sends::id.eq(id)).load(c))?,
        None => crate::with_backend!(conn, |c| base
            .filter(bulk_sends::pending_count.gt(0))
            .load(c))?,
    };
    Ok(rows
        .into_iter()
        .map(|(send_id, phone_row_id, portfolio_id, pending)| SendOwner {
            send_id,
            phone_row_id,
            portfolio_id,
            settled: pending <= 0,
        })
        .collect())
}

/// A node as `cluster status` shows it.
#[derive(Debug, Clone, serde::Serialize, QueryableByName)]
pub struct NodeStatus {
    #[diesel(sql_type = Text)]
    pub name: String,
    #[diesel(sql_type = Text)]
    pub version: String,
    #[diesel(sql_type = Text)]
    pub bind: String,
    #[diesel(sql_type = Text)]
    pub started_at: String,
    #[diesel(sql_type = Text)]
    pub last_heartbeat: String,
    /// Seconds since the last heartbeat, by the database's clock.
    #[diesel(sql_type = diesel::sql_types::Double)]
    pub heartbeat_age_secs: f64,
    /// `alive`, `left` (a clean stop) or `lost` (no heartbeat for a lease's lifetime).
    #[diesel(sql_type = Text)]
    pub state: String,
    /// Leases it holds now.
    #[diesel(sql_type = BigInt)]
    pub leases: i64,
}

/// A lease as `cluster status` shows it.
#[derive(Debug, Clone, serde::Serialize, QueryableByName)]
pub struct LeaseStatus {
    #[diesel(sql_type = Text)]
    pub portfolio_id: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub owner: Option<String>,
    #[diesel(sql_type = BigInt)]
    pub epoch: i64,
    #[diesel(sql_type = Text)]
    pub expires_at: String,
    /// Seconds until it expires (negative: expired), by the database's clock.
    #[diesel(sql_type = diesel::sql_types::Double)]
    pub expires_in_secs: f64,
}

/// The cluster as the database knows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClusterStatus {
    /// `postgres` (a cluster) or `sqlite` (one node; no nodes or leases are recorded).
    pub backend: &'static str,
    pub nodes: Vec<NodeStatus>,
    pub leases: Vec<LeaseStatus>,
}

/// The nodes and leases, for `mindo-bulk cluster status`.
pub fn status(conn: &mut DbConnection, ttl_ms: i64) -> Result<ClusterStatus, StorageError> {
    let Some(c) = pg(conn) else {
        return Ok(ClusterStatus {
            backend: "sqlite",
            nodes: Vec::new(),
            leases: Vec::new(),
        });
    };
    let nodes = diesel::sql_query(
        "SELECT n.name, n.version, n.bind, \
             to_char(n.started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS started_at, \
             to_char(n.heartbeat_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS last_heartbeat, \
             extract(epoch FROM now() - n.heartbeat_at)::float8 AS heartbeat_age_secs, \
             CASE WHEN n.left_at IS NOT NULL THEN 'left' \
                  WHEN n.heartbeat_at > now() - $1 * interval '1 millisecond' THEN 'alive' \
                  ELSE 'lost' END AS state, \
             (SELECT count(*) FROM portfolio_leases l \
                 WHERE l.owner = n.name AND l.expires_at > now()) AS leases \
         FROM cluster_nodes n ORDER BY n.name",
    )
    .bind::<BigInt, _>(ttl_ms)
    .load(c)?;
    let leases = diesel::sql_query(
        "SELECT portfolio_id, owner, epoch, \
             to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS expires_at, \
             extract(epoch FROM expires_at - now())::float8 AS expires_in_secs \
         FROM portfolio_leases ORDER BY portfolio_id",
    )
    .load(c)?;
    Ok(ClusterStatus {
        backend: "postgres",
        nodes,
        leases,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fair_shares_cover_every_lease() {
        assert_eq!(fair_share(0, 3), 0);
        assert_eq!(fair_share(1, 3), 1);
        assert_eq!(fair_share(3, 2), 2);
        assert_eq!(fair_share(4, 2), 2);
        assert_eq!(fair_share(5, 1), 5);
        // No live node recorded yet (the first heartbeat): this node takes everything.
        assert_eq!(fair_share(5, 0), 5);
        for total in 0..20 {
            for live in 1..6 {
                assert!(fair_share(total, live) * live as usize >= total as usize);
            }
        }
    }

    #[test]
    fn a_node_hands_over_what_keeps_the_cluster_unbalanced() {
        // Four portfolios on three nodes: 2, 2, 0 after a node came back.
        assert_eq!(surplus(2, 2, 0), 1);
        // 2, 1, 1: balanced.
        assert_eq!(surplus(2, 2, 1), 0);
        assert_eq!(surplus(1, 2, 1), 0);
        // One node alone holding everything, a second joins (share 2 of 4).
        assert_eq!(surplus(4, 2, 0), 2);
        assert_eq!(surplus(0, 2, 0), 0);
    }

    #[test]
    fn events_round_trip_their_kind() {
        for event in [ClusterEvent::Send("abc".into()), ClusterEvent::Number(7)] {
            let (kind, target) = event.kind_and_target();
            assert_eq!(ClusterEvent::parse(kind, target), Some(event));
        }
        assert_eq!(ClusterEvent::parse("number", "x".into()), None);
        assert_eq!(ClusterEvent::parse("other", "1".into()), None);
    }
}
