//! The control operations (`/__sim/*` and the [`crate::simulator::Simulator`] handle): template
//! status, sender numbers and the webhook URL, each with the webhooks Meta would send.

use super::*;

/// Why a control operation could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No such WABA, template or number.
    #[error("{0}")]
    NotFound(String),
    /// A value that cannot be used.
    #[error("{0}")]
    Invalid(String),
}

/// Changes to a sender number (`POST /__sim/phone-numbers/{id}`); absent fields stay.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhoneNumberChange {
    /// The new messaging limit, any of Meta's forms. Applies to the number's whole portfolio.
    #[serde(default)]
    pub tier: Option<Tier>,
    /// `STANDARD` or `HIGH`.
    #[serde(default)]
    pub throughput_level: Option<ThroughputLevel>,
    /// `GREEN`, `YELLOW`, `RED`, `UNKNOWN`.
    #[serde(default)]
    pub quality_rating: Option<String>,
    /// Coexistence with the WhatsApp Business app (20 mps).
    #[serde(default)]
    pub is_on_biz_app: Option<bool>,
}

/// A template's new status (`POST /__sim/templates/status`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TemplateStatusChange {
    pub waba_id: String,
    pub name: String,
    pub language: String,
    /// `APPROVED`, `PAUSED`, `DISABLED`, `REJECTED`, … (any case).
    pub status: String,
}

/// A text a user writes to one of our numbers (`POST /__sim/inbound`): sent to the webhook
/// as an inbound `messages` notification. The simulator does not read it (Meta does not: a
/// typed "STOP" is ordinary text).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboundText {
    /// The number written to (Meta's phone-number id).
    pub phone_number_id: String,
    /// The user, E.164.
    pub from: String,
    pub text: String,
}

/// A user's choice in WhatsApp to stop or resume a business's marketing messages
/// (`POST /__sim/user-preferences`): a `user_preferences` webhook, and from then on marketing
/// sends to the user fail with 131050 (until a resume).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserPreferenceChange {
    /// A number of the business (its WABA receives the webhook).
    pub phone_number_id: String,
    /// The user, E.164.
    pub phone: String,
    /// `stop` or `resume`.
    pub value: String,
}

/// Meta's integer limit for webhooks (`250`, `2000`, …), `"UNLIMITED"` without one.
fn limit_json(tier: Tier) -> serde_json::Value {
    match tier.limit() {
        Some(limit) => serde_json::Value::from(limit),
        None => serde_json::Value::from("UNLIMITED"),
    }
}

impl Shared {
    /// Sets a template's status and sends `message_template_status_update`.
    pub fn set_template_status(&self, change: &TemplateStatusChange) -> Result<(), ControlError> {
        let TemplateStatusChange {
            waba_id,
            name,
            language,
            status,
        } = change;
        let status = status.trim().to_ascii_uppercase();
        if status.is_empty() || !status.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') {
            return Err(ControlError::Invalid(format!(
                "{status:?} is not a template status (APPROVED, PAUSED, DISABLED, REJECTED, …)"
            )));
        }
        let (value, waba) = {
            let mut world = self.world.write();
            let waba = *world
                .waba_index
                .get(waba_id)
                .ok_or_else(|| ControlError::NotFound(format!("no WABA {waba_id}")))?;
            let t = world.template(waba, name, language).ok_or_else(|| {
                ControlError::NotFound(format!(
                    "no template {name} in {language} in WABA {waba_id}"
                ))
            })?;
            let template = &mut world.templates[t];
            if template.status == status {
                return Ok(());
            }
            template.status.clone_from(&status);
            let mut value = serde_json::json!({
                "event": status,
                "message_template_id": template.id.parse::<i64>().map_or_else(
                    |_| serde_json::Value::from(template.id.clone()),
                    serde_json::Value::from,
                ),
                "message_template_name": template.name,
                "message_template_language": template.language,
                "message_template_category": template.category,
                "reason": "NONE",
            });
            let other_info = match status.as_str() {
                "PAUSED" => Some((
                    "FIRST_PAUSE",
                    "Your message template has been paused because of low quality.",
                )),
                "DISABLED" => Some((
                    "DISABLED",
                    "Your message template has been disabled because of repeated low quality.",
                )),
                _ => None,
            };
            if let Some((title, description)) = other_info {
                value["other_info"] =
                    serde_json::json!({"title": title, "description": description});
            }
            (value, world.wabas[waba].id.clone())
        };
        self.emit(waba, "message_template_status_update", value);
        Ok(())
    }

    /// Changes a number (tier of its portfolio, throughput, quality, coexistence) and sends the
    /// webhooks Meta would:
    /// - tier: `business_capability_update` to each WABA of the portfolio and
    ///   `phone_number_quality_update` (`UPGRADE`/`DOWNGRADE`, legacy events Meta's parsers still
    ///   see) for each of its numbers;
    /// - throughput to `HIGH`: `phone_number_quality_update` with `THROUGHPUT_UPGRADE` (Meta does
    ///   not announce downgrades; neither does the simulator);
    /// - quality to `RED`: `FLAGGED`; from `RED`: `UNFLAGGED` (legacy events); other quality
    ///   changes and `is_on_biz_app` are silent.
    pub fn set_phone_number(
        &self,
        id: &str,
        change: &PhoneNumberChange,
    ) -> Result<(), ControlError> {
        let mut events: Vec<(String, &'static str, serde_json::Value)> = Vec::new();
        {
            let mut world = self.world.write();
            let n = *world
                .number_index
                .get(id)
                .ok_or_else(|| ControlError::NotFound(format!("no phone number {id}")))?;
            let waba = world.numbers[n].waba;
            let portfolio = world.wabas[waba].portfolio;
            let quality = match &change.quality_rating {
                Some(q) => {
                    let q = q.trim().to_ascii_uppercase();
                    if !["GREEN", "YELLOW", "RED", "UNKNOWN", "NA"].contains(&q.as_str()) {
                        return Err(ControlError::Invalid(format!(
                            "{q:?} is not a quality rating (GREEN, YELLOW, RED, UNKNOWN)"
                        )));
                    }
                    Some(q)
                }
                None => None,
            };
            if let Some(tier) = change.tier {
                let old = world.portfolios[portfolio].tier;
                if old != tier {
                    world.portfolios[portfolio].tier = tier;
                    let event = if crate::simulator::world::tier_rank(tier)
                        > crate::simulator::world::tier_rank(old)
                    {
                        "UPGRADE"
                    } else {
                        "DOWNGRADE"
                    };
                    for w in world.wabas.iter().filter(|w| w.portfolio == portfolio) {
                        events.push((
                            w.id.clone(),
                            "business_capability_update",
                            serde_json::json!({"max_daily_conversations_per_business": limit_json(tier)}),
                        ));
                        for &number in &w.numbers {
                            events.push((
                                w.id.clone(),
                                "phone_number_quality_update",
                                serde_json::json!({
                                    "display_phone_number": world.numbers[number].display_digits,
                                    "event": event,
                                    "current_limit": tier.as_meta_str(),
                                    "old_limit": old.as_meta_str(),
                                    "max_daily_conversations_per_business": limit_json(tier),
                                }),
                            ));
                        }
                    }
                }
            }
            let tier = world.portfolios[portfolio].tier;
            let waba_id = world.wabas[waba].id.clone();
            let number = &mut world.numbers[n];
            if let Some(level) = change.throughput_level {
                if level != number.throughput_level {
                    number.throughput_level = level;
                    if level == ThroughputLevel::High {
                        events.push((
                            waba_id.clone(),
                            "phone_number_quality_update",
                            serde_json::json!({
                                "display_phone_number": number.display_digits,
                                "event": "THROUGHPUT_UPGRADE",
                                "current_limit": tier.as_meta_str(),
                                "max_daily_conversations_per_business": limit_json(tier),
                            }),
                        ));
                    }
                }
            }
            if let Some(quality) = quality {
                let event = match (number.quality_rating.as_str(), quality.as_str()) {
                    (old, "RED") if old != "RED" => Some("FLAGGED"),
                    ("RED", new) if new != "RED" => Some("UNFLAGGED"),
                    _ => None,
                };
                number.quality_rating = quality;
                if let Some(event) = event {
                    events.push((
                        waba_id,
                        "phone_number_quality_update",
                        serde_json::json!({
                            "display_phone_number": number.display_digits,
                            "event": event,
                            "current_limit": tier.as_meta_str(),
                            "max_daily_conversations_per_business": limit_json(tier),
                        }),
                    ));
                }
            }
            if let Some(on) = change.is_on_biz_app {
                number.is_on_biz_app = on;
            }
        }
        for (waba_id, field, value) in events {
            self.emit(waba_id, field, value);
        }
        Ok(())
    }

    /// Sends an inbound text webhook, as if the user wrote it now.
    pub fn inbound_text(&self, inbound: &InboundText) -> Result<(), ControlError> {
        let user = recipient_key(&inbound.from)
            .ok_or_else(|| ControlError::Invalid(format!("{:?} is not E.164", inbound.from)))?;
        let (waba_id, value) = {
            let world = self.world.read();
            let n = *world
                .number_index
                .get(&inbound.phone_number_id)
                .ok_or_else(|| {
                    ControlError::NotFound(format!("no phone number {}", inbound.phone_number_id))
                })?;
            let number = &world.numbers[n];
            let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
            let value = serde_json::json!({
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": number.display_digits,
                             "phone_number_id": number.id},
                "contacts": [{"profile": {"name": "Simulated user"}, "wa_id": user.to_string()}],
                "messages": [{"from": user.to_string(),
                              "id": format!("wamid.IN{:08X}{seq:016X}", self.run_id),
                              "timestamp": self.clock.now_ms().div_euclid(1_000).to_string(),
                              "type": "text", "text": {"body": inbound.text}}],
            });
            (world.wabas[number.waba].id.clone(), value)
        };
        self.emit(waba_id, "messages", value);
        Ok(())
    }

    /// Records a user's marketing stop or resume and sends the `user_preferences` webhook.
    pub fn user_preference(&self, change: &UserPreferenceChange) -> Result<(), ControlError> {
        let user = recipient_key(&change.phone)
            .ok_or_else(|| ControlError::Invalid(format!("{:?} is not E.164", change.phone)))?;
        let stop = match change.value.trim().to_ascii_lowercase().as_str() {
            "stop" => true,
            "resume" => false,
            other => {
                return Err(ControlError::Invalid(format!(
                    "{other:?} is not a preference (stop or resume)"
                )))
            }
        };
        let (waba_id, value) = {
            let mut world = self.world.write();
            let n = *world
                .number_index
                .get(&change.phone_number_id)
                .ok_or_else(|| {
                    ControlError::NotFound(format!("no phone number {}", change.phone_number_id))
                })?;
            if stop {
                world.marketing_stopped.insert(user);
            } else {
                world.marketing_stopped.remove(&user);
            }
            let number = &world.numbers[n];
            let (value_word, detail) = match stop {
                true => ("stop", "User requested to stop marketing messages"),
                false => ("resume", "User requested to resume marketing messages"),
            };
            let value = serde_json::json!({
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": number.display_digits,
                             "phone_number_id": number.id},
                "user_preferences": [{"wa_id": user.to_string(), "detail": detail,
                                      "category": "marketing_messages", "value": value_word,
                                      "timestamp": self.clock.now_ms().div_euclid(1_000)}],
            });
            (world.wabas[number.waba].id.clone(), value)
        };
        self.emit(waba_id, "user_preferences", value);
        Ok(())
    }

    /// Sets or clears the webhook URL (pending retries go to the new one).
    pub fn set_webhook_url(&self, url: Option<String>) {
        *self.webhook_url.write() = url.map(Arc::from);
    }
}
