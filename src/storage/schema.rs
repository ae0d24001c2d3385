//! The database schema, written by hand for both backends (see the migrations).
//! Times are Unix milliseconds (UTC); our own ids are 64-bit integers; UUIDs and JSON are text.

diesel::table! {
    tenants (id) {
        id -> BigInt,
        name -> Text,
        webhook_secret -> Text,
        created_at -> BigInt,
        webhook_secret_key_id -> Nullable<Text>,
    }
}

diesel::table! {
    api_keys (id) {
        id -> BigInt,
        tenant_id -> BigInt,
        name -> Text,
        lookup -> Text,
        key_hash -> Text,
        created_at -> BigInt,
        revoked_at -> Nullable<BigInt>,
        scope -> Text,
        expires_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    business_accounts (id) {
        id -> BigInt,
        tenant_id -> BigInt,
        waba_id -> Text,
        business_name -> Text,
        portfolio_id -> Text,
        access_token -> Text,
        synced_at -> Nullable<BigInt>,
        created_at -> BigInt,
        access_token_key_id -> Nullable<Text>,
    }
}

diesel::table! {
    phone_numbers (id) {
        id -> BigInt,
        business_account_id -> BigInt,
        phone_number_id -> Text,
        display_phone_number -> Text,
        verified_name -> Text,
        quality_rating -> Text,
        messaging_limit_tier -> Text,
        throughput_level -> Text,
        throughput_mps -> Integer,
        override_mps -> Nullable<Integer>,
        paused -> Bool,
        pause_reason -> Nullable<Text>,
        is_primary -> Bool,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    templates (id) {
        id -> BigInt,
        business_account_id -> BigInt,
        meta_template_id -> Text,
        name -> Text,
        language -> Text,
        category -> Text,
        status -> Text,
        parameter_format -> Text,
        components -> Text,
        created_at -> BigInt,
        updated_at -> BigInt,
        status_event_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    bulk_sends (id) {
        id -> Text,
        tenant_id -> BigInt,
        api_key_id -> BigInt,
        phone_number_id -> BigInt,
        template_id -> BigInt,
        task_id -> Text,
        status -> Text,
        total_submitted -> Integer,
        unique_recipients -> Integer,
        invalid_recipients -> Integer,
        pending_count -> Integer,
        sent_count -> Integer,
        delivered_count -> Integer,
        read_count -> Integer,
        failed_count -> Integer,
        cancelled_count -> Integer,
        estimated_time_minutes -> Double,
        paused -> Bool,
        pause_reason -> Nullable<Text>,
        failure_reason -> Nullable<Text>,
        callback_url -> Nullable<Text>,
        scheduled_at -> Nullable<BigInt>,
        created_at -> BigInt,
        started_at -> Nullable<BigInt>,
        completed_at -> Nullable<BigInt>,
        suppressed_count -> Integer,
        send_key -> BigInt,
    }
}

diesel::table! {
    messages (id) {
        id -> BigInt,
        send_key -> BigInt,
        seq -> Integer,
        recipient -> Text,
        variables -> Text,
        button_variables -> Text,
        state -> Text,
        attempts -> Integer,
        next_attempt_at -> BigInt,
        dispatched_at -> Nullable<BigInt>,
        wamid -> Nullable<Text>,
        sent_at -> Nullable<BigInt>,
        delivered_at -> Nullable<BigInt>,
        read_at -> Nullable<BigInt>,
        failed_at -> Nullable<BigInt>,
        error_code -> Nullable<BigInt>,
        error_message -> Nullable<Text>,
    }
}

diesel::table! {
    quota_ledger (portfolio_id, recipient) {
        portfolio_id -> Text,
        recipient -> Text,
        last_sent_at -> BigInt,
    }
}

diesel::table! {
    idempotency_keys (tenant_id, idempotency_key) {
        tenant_id -> BigInt,
        idempotency_key -> Text,
        request_hash -> Text,
        response_status -> Nullable<Integer>,
        response_body -> Nullable<Text>,
        created_at -> BigInt,
    }
}

diesel::table! {
    inbound_contacts (phone_number_id, wa_id) {
        phone_number_id -> Text,
        wa_id -> Text,
        last_inbound_at -> BigInt,
    }
}

diesel::table! {
    callback_events (id) {
        id -> BigInt,
        bulk_send_id -> Text,
        tenant_id -> BigInt,
        event -> Text,
        occurred_at -> BigInt,
        payload -> Text,
        attempts -> Integer,
        next_attempt_at -> BigInt,
        delivered_at -> Nullable<BigInt>,
        failed_at -> Nullable<BigInt>,
        last_error -> Nullable<Text>,
    }
}

diesel::table! {
    suppressions (tenant_id, phone) {
        tenant_id -> BigInt,
        phone -> Text,
        active -> Bool,
        scope -> Text,
        reason -> Text,
        source -> Text,
        signal_at -> BigInt,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::joinable!(api_keys -> tenants (tenant_id));
diesel::joinable!(business_accounts -> tenants (tenant_id));
diesel::joinable!(phone_numbers -> business_accounts (business_account_id));
diesel::joinable!(templates -> business_accounts (business_account_id));
diesel::joinable!(bulk_sends -> tenants (tenant_id));
diesel::joinable!(bulk_sends -> api_keys (api_key_id));
diesel::joinable!(bulk_sends -> phone_numbers (phone_number_id));
diesel::joinable!(bulk_sends -> templates (template_id));
// messages.send_key is bulk_sends.send_key, not the send's primary key, and no foreign key
// backs it (migrations 2026-11-30-220000, 2026-12-01-060000): messages are only ever inserted
// with their send.
diesel::joinable!(idempotency_keys -> tenants (tenant_id));
diesel::joinable!(callback_events -> bulk_sends (bulk_send_id));
diesel::joinable!(callback_events -> tenants (tenant_id));

diesel::allow_tables_to_appear_in_same_query!(
    tenants,
    api_keys,
    business_accounts,
    phone_numbers,
    templates,
    bulk_sends,
    messages,
    quota_ledger,
    idempotency_keys,
    inbound_contacts,
    callback_events,
    suppressions,
);
