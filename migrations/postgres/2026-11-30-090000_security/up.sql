-- Security (issue #15): API key scopes and expiry, and the key id beside each secret that is
-- encrypted at rest. A NULL key id marks a secret still in plain text: the daemon encrypts
-- those rows at start (`storage::secrets`), since SQL has no key to do it with. Keep the
-- other backend's tree in step with this file.
ALTER TABLE api_keys ADD COLUMN scope TEXT NOT NULL DEFAULT 'send';
ALTER TABLE api_keys ADD COLUMN expires_at BIGINT;
ALTER TABLE business_accounts ADD COLUMN access_token_key_id TEXT;
ALTER TABLE tenants ADD COLUMN webhook_secret_key_id TEXT;
