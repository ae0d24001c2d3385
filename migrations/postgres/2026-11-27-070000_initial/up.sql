-- The initial schema (PostgreSQL). Times are Unix milliseconds (UTC) in BIGINT columns,
-- ids of our own rows are 64-bit integers, UUIDs and JSON are TEXT: the same Rust
-- types map onto both backends. Keep migrations/sqlite in step with this file.

CREATE TABLE tenants (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    webhook_secret TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id BIGSERIAL PRIMARY KEY,
    tenant_id BIGINT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    lookup TEXT NOT NULL UNIQUE,
    key_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);

CREATE TABLE business_accounts (
    id BIGSERIAL PRIMARY KEY,
    tenant_id BIGINT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    waba_id TEXT NOT NULL UNIQUE,
    business_name TEXT NOT NULL,
    portfolio_id TEXT NOT NULL,
    access_token TEXT NOT NULL,
    synced_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX business_accounts_tenant ON business_accounts (tenant_id);

CREATE TABLE phone_numbers (
    id BIGSERIAL PRIMARY KEY,
    business_account_id BIGINT NOT NULL REFERENCES business_accounts (id) ON DELETE CASCADE,
    phone_number_id TEXT NOT NULL UNIQUE,
    display_phone_number TEXT NOT NULL,
    verified_name TEXT NOT NULL,
    quality_rating TEXT NOT NULL,
    messaging_limit_tier TEXT NOT NULL,
    throughput_level TEXT NOT NULL,
    throughput_mps INTEGER NOT NULL,
    override_mps INTEGER,
    paused BOOLEAN NOT NULL DEFAULT FALSE,
    pause_reason TEXT,
    is_primary BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX phone_numbers_account ON phone_numbers (business_account_id);

CREATE TABLE templates (
    id BIGSERIAL PRIMARY KEY,
    business_account_id BIGINT NOT NULL REFERENCES business_accounts (id) ON DELETE CASCADE,
    meta_template_id TEXT NOT NULL,
    name TEXT NOT NULL,
    language TEXT NOT NULL,
    category TEXT NOT NULL,
    status TEXT NOT NULL,
    parameter_format TEXT NOT NULL,
    components TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (business_account_id, name, language)
);

CREATE TABLE bulk_sends (
    id TEXT PRIMARY KEY NOT NULL,
    tenant_id BIGINT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    api_key_id BIGINT NOT NULL REFERENCES api_keys (id),
    phone_number_id BIGINT NOT NULL REFERENCES phone_numbers (id),
    template_id BIGINT NOT NULL REFERENCES templates (id),
    task_id TEXT NOT NULL,
    status TEXT NOT NULL,
    total_submitted INTEGER NOT NULL,
    unique_recipients INTEGER NOT NULL,
    invalid_recipients INTEGER NOT NULL,
    pending_count INTEGER NOT NULL,
    sent_count INTEGER NOT NULL DEFAULT 0,
    delivered_count INTEGER NOT NULL DEFAULT 0,
    read_count INTEGER NOT NULL DEFAULT 0,
    failed_count INTEGER NOT NULL DEFAULT 0,
    cancelled_count INTEGER NOT NULL DEFAULT 0,
    estimated_time_minutes DOUBLE PRECISION NOT NULL,
    paused BOOLEAN NOT NULL DEFAULT FALSE,
    pause_reason TEXT,
    failure_reason TEXT,
    callback_url TEXT,
    scheduled_at BIGINT,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    completed_at BIGINT
);
CREATE INDEX bulk_sends_tenant_created ON bulk_sends (tenant_id, created_at);
CREATE INDEX bulk_sends_status ON bulk_sends (status);

CREATE TABLE messages (
    id BIGSERIAL PRIMARY KEY,
    bulk_send_id TEXT NOT NULL REFERENCES bulk_sends (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    recipient TEXT NOT NULL,
    variables TEXT NOT NULL,
    button_variables TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    dispatched_at BIGINT,
    wamid TEXT,
    sent_at BIGINT,
    delivered_at BIGINT,
    read_at BIGINT,
    failed_at BIGINT,
    error_code BIGINT,
    error_message TEXT,
    UNIQUE (bulk_send_id, seq)
);
CREATE UNIQUE INDEX messages_wamid ON messages (wamid);
CREATE INDEX messages_due ON messages (bulk_send_id, state, next_attempt_at, id);

CREATE TABLE quota_ledger (
    portfolio_id TEXT NOT NULL,
    recipient TEXT NOT NULL,
    last_sent_at BIGINT NOT NULL,
    PRIMARY KEY (portfolio_id, recipient)
);
CREATE INDEX quota_ledger_window ON quota_ledger (portfolio_id, last_sent_at);

CREATE TABLE idempotency_keys (
    tenant_id BIGINT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    idempotency_key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    response_status INTEGER,
    response_body TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, idempotency_key)
);
