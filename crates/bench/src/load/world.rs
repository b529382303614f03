//! The synthetic customer base, seeded straight into the suite's database.
//!
//! A million profiles through CreateProfile would take longer than the
//! benchmark itself, so the base is written with `INSERT … SELECT … FROM
//! generate_series` in chunks: the rows are built inside PostgreSQL from the
//! profile's index and the seed, with no round trip per row. The rows follow
//! the profile service's schema (crates/profile/src/storage/migration): the
//! same tables, the normalised identifier values the service would store,
//! consents in its append-only history, groups with member roles.
//!
//! Profile `i` of seed `s`:
//! - id: `md5('cairn-bench:s:i')` as a UUID;
//! - identifiers: CRM id `crm-<i>`, phone number `+4670<i, 7 digits>` (a Swedish mobile number, valid by libphonenumber's ranges),
//!   email `customer<i>@example.com`, device id `device-<s>-<i>`;
//! - attributes: plan, tenure in months, monthly spend, language;
//! - consent: marketing granted on the web and in the app, service on email;
//! - a household group for every three profiles, the first the owner.

use std::time::{Duration, Instant};

use rand::Rng;
use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, Statement};

/// Rows built per statement.
const CHUNK: u64 = 50_000;

/// The kinds of identifier each profile holds, as the contract names them.
pub const IDENTIFIER_KINDS: [cairn_contract::common::v1::IdentifierType; 4] = [
    cairn_contract::common::v1::IdentifierType::CrmId,
    cairn_contract::common::v1::IdentifierType::PhoneNumber,
    cairn_contract::common::v1::IdentifierType::Email,
    cairn_contract::common::v1::IdentifierType::DeviceId,
];

/// The seeded customer base.
#[derive(Debug, Clone, Copy)]
pub struct World {
    /// The seed: ids and device ids depend on it.
    pub seed: u64,
    /// Profiles seeded so far (indices `0..profiles`).
    pub profiles: u64,
}

impl World {
    /// An empty world of `seed`.
    pub fn new(seed: u64) -> Self {
        Self { seed, profiles: 0 }
    }

    /// The value of identifier `kind` of profile `index`, as a caller
    /// would send it.
    pub fn identifier(
        &self,
        kind: cairn_contract::common::v1::IdentifierType,
        index: u64,
    ) -> cairn_contract::common::v1::Identifier {
        use cairn_contract::common::v1::IdentifierType;
        let value = match kind {
            IdentifierType::CrmId => format!("crm-{index}"),
            IdentifierType::PhoneNumber => format!("+4670{index:07}"),
            IdentifierType::Email => format!("customer{index}@example.com"),
            _ => format!("device-{}-{index}", self.seed),
        };
        cairn_contract::common::v1::Identifier {
            r#type: kind as i32,
            value,
            custom_type: String::new(),
        }
    }

    /// A random identifier of a random profile.
    pub fn random_identifier(&self, rng: &mut impl Rng) -> cairn_contract::common::v1::Identifier {
        let index = rng.random_range(0..self.profiles.max(1));
        let kind = IDENTIFIER_KINDS[rng.random_range(0..IDENTIFIER_KINDS.len())];
        self.identifier(kind, index)
    }

    /// Seeds profiles up to `total` (from the current count), reporting
    /// progress on standard error; returns how long it took.
    pub async fn grow_profiles(
        &mut self,
        db: &DatabaseConnection,
        total: u64,
    ) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let mut from = self.profiles;
        while from < total {
            let to = (from + CHUNK).min(total);
            self.seed_profile_chunk(db, from, to).await?;
            from = to;
            self.profiles = to;
            if to.is_multiple_of(200_000) || to == total {
                eprintln!(
                    "  seeded {to} profiles ({:.0} s)",
                    started.elapsed().as_secs_f64()
                );
            }
        }
        analyze(
            db,
            &[
                "profile_profiles",
                "profile_identifiers",
                "profile_consents",
                "profile_groups",
                "profile_group_members",
            ],
        )
        .await?;
        Ok(started.elapsed())
    }

    async fn seed_profile_chunk(
        &self,
        db: &DatabaseConnection,
        from: u64,
        to: u64,
    ) -> anyhow::Result<()> {
        let seed = self.seed as i64;
        let (from, to) = (from as i64, to as i64 - 1);
        let id = "md5('cairn-bench:' || $1::text || ':' || i::text)::uuid::text";
        let statements = [
            format!(
                "INSERT INTO profile_profiles (id, state, attributes, created_at, updated_at, merged_into, attribute_times) \
                 SELECT {id}, 'known', jsonb_build_object( \
                     'plan', jsonb_build_object('string', (ARRAY['basic','plus','premium'])[1 + i % 3]), \
                     'tenure_months', jsonb_build_object('number', i % 97), \
                     'monthly_spend', jsonb_build_object('number', 10 + (i * 7919) % 90), \
                     'language', jsonb_build_object('string', (ARRAY['en','sv','de'])[1 + i % 3])), \
                   now(), now(), NULL, NULL \
                 FROM generate_series($2::bigint, $3::bigint) AS i"
            ),
            format!(
                "INSERT INTO profile_identifiers (profile_id, kind, value, shared, valid_from, valid_until) \
                 SELECT {id}, k.kind, CASE k.kind \
                     WHEN 'crm_id' THEN 'crm-' || i::text \
                     WHEN 'phone_number' THEN '+4670' || lpad(i::text, 7, '0') \
                     WHEN 'email' THEN 'customer' || i::text || '@example.com' \
                     ELSE 'device-' || $1::text || '-' || i::text END, \
                   false, now(), NULL \
                 FROM generate_series($2::bigint, $3::bigint) AS i \
                 CROSS JOIN (VALUES ('crm_id'), ('phone_number'), ('email'), ('device_id')) AS k(kind)"
            ),
            // Channels by the contract's numbers: web 1, mobile app 2, email 8.
            format!(
                "INSERT INTO profile_consents (profile_id, purpose, channel, granted, source, recorded_at, expires_at, merge_id) \
                 SELECT {id}, c.purpose, c.channel, true, 'bench', now(), NULL, NULL \
                 FROM generate_series($2::bigint, $3::bigint) AS i \
                 CROSS JOIN (VALUES ('marketing', 1), ('marketing', 2), ('service', 8)) AS c(purpose, channel)"
            ),
            "INSERT INTO profile_groups (id, group_type, display_name, created_at) \
             SELECT md5('cairn-bench-group:' || $1::text || ':' || i::text)::uuid::text, 'household', 'Household ' || i::text, now() \
             FROM generate_series($2::bigint, $3::bigint) AS i WHERE i % 3 = 0"
                .to_string(),
            format!(
                "INSERT INTO profile_group_members (group_id, profile_id, role, joined_at) \
                 SELECT md5('cairn-bench-group:' || $1::text || ':' || (i - i % 3)::text)::uuid::text, {id}, \
                   CASE WHEN i % 3 = 0 THEN 'owner' ELSE 'member' END, now() \
                 FROM generate_series($2::bigint, $3::bigint) AS i"
            ),
        ];
        for sql in statements {
            db.execute_raw(Statement::from_sql_and_values(
                DatabaseBackend::Postgres,
                sql,
                [seed.to_string().into(), from.into(), to.into()],
            ))
            .await?;
        }
        Ok(())
    }

    /// The profile ids of `indices`.
    pub async fn profile_ids(
        &self,
        db: &DatabaseConnection,
        indices: &[u64],
    ) -> anyhow::Result<Vec<String>> {
        let indices: Vec<i64> = indices.iter().map(|&i| i as i64).collect();
        let rows = db
            .query_all_raw(Statement::from_sql_and_values(
                DatabaseBackend::Postgres,
                "SELECT md5('cairn-bench:' || $1::text || ':' || i::text)::uuid::text AS id \
                 FROM unnest($2::bigint[]) WITH ORDINALITY AS t(i, n) ORDER BY n",
                [self.seed.to_string().into(), indices.into()],
            ))
            .await?;
        rows.iter()
            .map(|row| Ok(row.try_get::<String>("", "id")?))
            .collect()
    }

    /// Seeds stored touchpoints (history) up to `total` rows in the
    /// journey service's table, spread over the profiles and the last 90
    /// days; returns how long it took.
    pub async fn grow_touchpoints(
        &self,
        db: &DatabaseConnection,
        total: u64,
    ) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let mut from = count(db, "journey_touchpoints").await?;
        while from < total {
            let to = (from + CHUNK).min(total);
            db.execute_raw(Statement::from_sql_and_values(
                DatabaseBackend::Postgres,
                "INSERT INTO journey_touchpoints (id, profile_id, customer_id, channel, kind, occurred_at, received_at, properties) \
                 SELECT 'history-' || $1::text || '-' || i::text, p.id, p.id, 1 + i % 2, \
                   (ARRAY['page_view','product_view','usage','chat','offer_shown'])[1 + i % 5], \
                   now() - make_interval(secs => (i * 7919) % 7776000), now(), '{}'::jsonb \
                 FROM generate_series($2::bigint, $3::bigint) AS i, \
                   LATERAL (SELECT md5('cairn-bench:' || $1::text || ':' || (i % $4::bigint)::text)::uuid::text AS id) AS p \
                 ON CONFLICT (id) DO NOTHING",
                [
                    self.seed.to_string().into(),
                    (from as i64).into(),
                    (to as i64 - 1).into(),
                    (self.profiles.max(1) as i64).into(),
                ],
            ))
            .await?;
            from = to;
        }
        analyze(db, &["journey_touchpoints"]).await?;
        Ok(started.elapsed())
    }
}

/// Rows in `table`.
pub async fn count(db: &DatabaseConnection, table: &str) -> anyhow::Result<u64> {
    let row = db
        .query_one_raw(Statement::from_string(
            DatabaseBackend::Postgres,
            format!("SELECT count(*)::bigint AS n FROM {table}"),
        ))
        .await?;
    Ok(row
        .map(|row| row.try_get::<i64>("", "n"))
        .transpose()?
        .unwrap_or(0) as u64)
}

/// Refreshes the planner's statistics after a bulk load, as an operator
/// would after an import.
async fn analyze(db: &DatabaseConnection, tables: &[&str]) -> anyhow::Result<()> {
    for table in tables {
        db.execute_unprepared(&format!("ANALYZE {table}")).await?;
    }
    Ok(())
}
