-- Opt-outs (issue 16): one row per tenant and phone, kept when the suppression is lifted so
-- that a stop older than the latest resume (Meta reorders webhooks) cannot suppress again.
-- Keep migrations/postgres in step with this file.
CREATE TABLE suppressions (
    tenant_id BIGINT NOT NULL REFERENCES tenants (id),
    -- E.164, as messages.recipient.
    phone TEXT NOT NULL,
    -- Whether the phone is suppressed now (false: lifted by a resume or a DELETE).
    active BOOLEAN NOT NULL,
    -- 'marketing': MARKETING templates only; 'all': every category (added by hand with
    -- suppress_all_categories).
    scope TEXT NOT NULL,
    reason TEXT NOT NULL,
    -- inbound_keyword, user_preferences, error_131050, api, import.
    source TEXT NOT NULL,
    -- When the latest stop or resume happened (unix ms, the signal's own time): an older
    -- signal changes nothing.
    signal_at BIGINT NOT NULL,
    -- When the current suppression began (unix ms).
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, phone)
);
-- The suppressed count of a send: recipients never sent because they opted out.
ALTER TABLE bulk_sends ADD COLUMN suppressed_count INTEGER NOT NULL DEFAULT 0;
