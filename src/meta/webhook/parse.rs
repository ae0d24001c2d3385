//! Reading a webhook body into a [`Notification`]: the envelope, each change by its `field`, and
//! the lenient field readers (see the parent module's doc for what is lenient).

use super::*;

/// Parses a webhook body (see the module doc for what is lenient and what is an error).
pub fn parse(body: &[u8]) -> Result<Notification, WebhookParseError> {
    let root: Value = serde_json::from_slice(body)?;
    let Value::Object(root) = root else {
        return Err(WebhookParseError::Shape("the body is not a JSON object"));
    };
    let entries = match root.get("entry") {
        Some(Value::Array(entries)) => entries,
        Some(_) => return Err(WebhookParseError::Shape("`entry` is not an array")),
        None => return Err(WebhookParseError::Shape("`entry` is missing")),
    };
    let mut out = Notification {
        object: text(&root, "object"),
        events: Vec::new(),
        skipped: 0,
    };
    for entry in entries {
        let Some(entry) = entry.as_object() else {
            out.skipped += 1;
            continue;
        };
        let context = EntryContext {
            waba_id: text(entry, "id"),
            time: int(entry, "time"),
        };
        for change in array(entry, "changes") {
            let field = change
                .as_object()
                .and_then(|c| c.get("field"))
                .and_then(Value::as_str);
            let Some(field) = field else {
                out.skipped += 1;
                continue;
            };
            let value = change.get("value").and_then(Value::as_object);
            parse_change(&context, field, value, &mut out);
        }
    }
    Ok(out)
}

/// What every change of an entry shares.
struct EntryContext {
    waba_id: Option<String>,
    time: Option<i64>,
}

fn parse_change(
    ctx: &EntryContext,
    field: &str,
    value: Option<&Map<String, Value>>,
    out: &mut Notification,
) {
    let known = matches!(
        field,
        "messages"
            | "user_preferences"
            | "message_template_status_update"
            | "phone_number_quality_update"
            | "business_capability_update"
            | "account_update"
    );
    if !known {
        out.events.push(Event::Unknown {
            waba_id: ctx.waba_id.clone(),
            field: field.to_owned(),
        });
        return;
    }
    let Some(value) = value else {
        out.skipped += 1;
        return;
    };
    match field {
        "messages" | "user_preferences" => parse_messages_value(ctx, value, out),
        "message_template_status_update" => match parse_template_status(ctx, value) {
            Some(update) => out.events.push(Event::TemplateStatus(update)),
            None => out.skipped += 1,
        },
        "phone_number_quality_update" => out.events.push(Event::PhoneQuality(PhoneQualityUpdate {
            waba_id: ctx.waba_id.clone(),
            time: ctx.time,
            display_phone_number: text(value, "display_phone_number"),
            event: text(value, "event").map(PhoneQualityEvent::from),
            current_limit: tier(value, "current_limit"),
            old_limit: tier(value, "old_limit"),
            max_daily_conversations_per_business: tier(
                value,
                "max_daily_conversations_per_business",
            ),
        })),
        "business_capability_update" => out.events.push(Event::Capability(CapabilityUpdate {
            waba_id: ctx.waba_id.clone(),
            time: ctx.time,
            max_daily_conversations_per_business: tier(
                value,
                "max_daily_conversations_per_business",
            ),
            max_daily_conversation_per_phone: tier(value, "max_daily_conversation_per_phone"),
            max_phone_numbers_per_business: int(value, "max_phone_numbers_per_business"),
            max_phone_numbers_per_waba: int(value, "max_phone_numbers_per_waba"),
        })),
        _ => out.events.push(Event::Account(AccountUpdate {
            waba_id: ctx.waba_id.clone(),
            time: ctx.time,
            event: text(value, "event").map(AccountEvent::from),
            phone_number: text(value, "phone_number"),
            ban_info: raw(value, "ban_info"),
            restriction_info: raw(value, "restriction_info"),
            violation_info: raw(value, "violation_info"),
        })),
    }
}

/// The `value` of a `messages` (or `user_preferences`) change: statuses, inbound messages, user
/// preferences and loose errors.
fn parse_messages_value(ctx: &EntryContext, value: &Map<String, Value>, out: &mut Notification) {
    let metadata = value.get("metadata").and_then(Value::as_object);
    let phone_number_id = metadata.and_then(|m| text(m, "phone_number_id"));

    for status in array(value, "statuses") {
        match status
            .as_object()
            .and_then(|s| parse_status(ctx, &phone_number_id, s))
        {
            Some(update) => out.events.push(Event::Status(update)),
            None => out.skipped += 1,
        }
    }

    let contacts = array(value, "contacts");
    for message in array(value, "messages") {
        match message
            .as_object()
            .and_then(|m| parse_inbound(ctx, &phone_number_id, contacts, m))
        {
            Some(inbound) => out.events.push(Event::Inbound(inbound)),
            None => out.skipped += 1,
        }
    }

    for preference in array(value, "user_preferences") {
        let parsed = preference.as_object().and_then(|p| {
            Some(UserPreferenceUpdate {
                waba_id: ctx.waba_id.clone(),
                phone_number_id: phone_number_id.clone(),
                wa_id: non_empty(text(p, "wa_id"))?,
                category: text(p, "category"),
                value: text(p, "value"),
                detail: text(p, "detail"),
                timestamp: int(p, "timestamp"),
            })
        });
        match parsed {
            Some(update) => out.events.push(Event::UserPreference(update)),
            None => out.skipped += 1,
        }
    }

    let errors = parse_errors(value);
    if !errors.is_empty() {
        out.events.push(Event::Errors(ChangeErrors {
            waba_id: ctx.waba_id.clone(),
            phone_number_id,
            errors,
        }));
    }
}

fn parse_status(
    ctx: &EntryContext,
    phone_number_id: &Option<String>,
    status: &Map<String, Value>,
) -> Option<StatusUpdate> {
    Some(StatusUpdate {
        waba_id: ctx.waba_id.clone(),
        phone_number_id: phone_number_id.clone(),
        wamid: non_empty(text(status, "id"))?,
        status: DeliveryStatus::from(non_empty(text(status, "status"))?),
        timestamp: int(status, "timestamp"),
        recipient_id: text(status, "recipient_id"),
        biz_opaque_callback_data: text(status, "biz_opaque_callback_data"),
        errors: parse_errors(status),
    })
}

fn parse_inbound(
    ctx: &EntryContext,
    phone_number_id: &Option<String>,
    contacts: &[Value],
    message: &Map<String, Value>,
) -> Option<InboundMessage> {
    let from = non_empty(text(message, "from"))?;
    let profile_name = contacts
        .iter()
        .filter_map(Value::as_object)
        .find(|c| text(c, "wa_id").as_deref() == Some(from.as_str()))
        .and_then(|c| c.get("profile"))
        .and_then(Value::as_object)
        .and_then(|p| text(p, "name"));
    Some(InboundMessage {
        waba_id: ctx.waba_id.clone(),
        phone_number_id: phone_number_id.clone(),
        id: non_empty(text(message, "id"))?,
        timestamp: int(message, "timestamp"),
        message_type: text(message, "type"),
        text: object(message, "text").and_then(|t| text(t, "body")),
        button_payload: object(message, "button").and_then(|b| text(b, "payload")),
        context_id: object(message, "context").and_then(|c| text(c, "id")),
        profile_name,
        from,
    })
}

fn parse_template_status(
    ctx: &EntryContext,
    value: &Map<String, Value>,
) -> Option<TemplateStatusUpdate> {
    let other_info = object(value, "other_info");
    Some(TemplateStatusUpdate {
        waba_id: ctx.waba_id.clone(),
        time: ctx.time,
        event: TemplateEvent::from(non_empty(text(value, "event"))?),
        message_template_id: text(value, "message_template_id"),
        name: text(value, "message_template_name"),
        language: text(value, "message_template_language"),
        reason: text(value, "reason"),
        category: text(value, "message_template_category"),
        other_info_title: other_info.and_then(|o| text(o, "title")),
        other_info_description: other_info.and_then(|o| text(o, "description")),
    })
}

/// The `errors` array of an object; items that are not objects are ignored.
fn parse_errors(parent: &Map<String, Value>) -> Vec<StatusError> {
    array(parent, "errors")
        .iter()
        .filter_map(Value::as_object)
        .map(|e| StatusError {
            code: int(e, "code").unwrap_or(NO_META_CODE),
            title: text(e, "title"),
            message: text(e, "message"),
            details: object(e, "error_data").and_then(|d| text(d, "details")),
        })
        .collect()
}

fn text(obj: &Map<String, Value>, key: &str) -> Option<String> {
    obj.get(key).and_then(lenient_string)
}

fn int(obj: &Map<String, Value>, key: &str) -> Option<i64> {
    obj.get(key).and_then(lenient_i64)
}

fn tier(obj: &Map<String, Value>, key: &str) -> Option<Tier> {
    obj.get(key).and_then(Tier::from_json)
}

fn object<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Map<String, Value>> {
    obj.get(key).and_then(Value::as_object)
}

fn array<'a>(obj: &'a Map<String, Value>, key: &str) -> &'a [Value] {
    obj.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn raw(obj: &Map<String, Value>, key: &str) -> Option<Value> {
    obj.get(key).filter(|v| !v.is_null()).cloned()
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.trim().is_empty())
}
