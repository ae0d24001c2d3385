-- Drops the columns `up.sql` added. Secrets already encrypted stay encrypted: an older
-- daemon cannot use them, so re-enter the access tokens (`waba add`) after going back.
ALTER TABLE tenants DROP COLUMN webhook_secret_key_id;
ALTER TABLE business_accounts DROP COLUMN access_token_key_id;
ALTER TABLE api_keys DROP COLUMN expires_at;
ALTER TABLE api_keys DROP COLUMN scope;
