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

    /// Sets or clears the webhook URL (pending retries go to the new one).
    pub fn set_webhook_url(&self, url: Option<String>) {
        *self.webhook_url.write() = url.map(Arc::from);
    }
}
