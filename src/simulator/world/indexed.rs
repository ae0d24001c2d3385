//! The indexed, mutable world built from a checked [`SimConfig`]: what the simulator's routes,
//! validation and controls read and change at runtime.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::Value;

use super::{SimConfig, SimConfigError};
use crate::domain::tier::{ThroughputLevel, Tier};
use crate::simulator::template::{check_locale, TemplateShape};

/// A business portfolio: owns the messaging limit shared by its WABAs' numbers.
#[derive(Clone, Debug)]
pub(crate) struct Portfolio {
    pub id: String,
    pub name: String,
    /// The portfolio's messaging limit; changed through the control API.
    pub tier: Tier,
}

/// A WABA at runtime.
#[derive(Clone, Debug)]
pub(crate) struct Waba {
    pub id: String,
    pub name: String,
    pub portfolio: usize,
    pub access_token: String,
    /// Indexes into [`World::numbers`], in configuration order.
    pub numbers: Vec<usize>,
    /// Indexes into [`World::templates`], in configuration order.
    pub templates: Vec<usize>,
    /// Template name → indexes (one per language).
    pub templates_by_name: HashMap<String, Vec<usize>>,
}

/// A sender number at runtime.
#[derive(Clone, Debug)]
pub(crate) struct PhoneNumber {
    pub id: String,
    pub display_phone_number: String,
    /// `display_phone_number` without separators: what webhooks carry.
    pub display_digits: String,
    pub verified_name: String,
    /// Changed through the control API.
    pub quality_rating: String,
    /// Changed through the control API.
    pub throughput_level: ThroughputLevel,
    /// Changed through the control API.
    pub is_on_biz_app: bool,
    pub waba: usize,
}

impl PhoneNumber {
    /// Messages per second this number may send: 20 on the Business app, else its level's.
    pub fn mps(&self) -> u32 {
        if self.is_on_biz_app {
            ThroughputLevel::Coexistence.mps()
        } else {
            self.throughput_level.mps()
        }
    }
}

/// A template at runtime, with what a send must supply.
#[derive(Clone, Debug)]
pub(crate) struct Template {
    pub id: String,
    pub name: String,
    pub language: String,
    /// Upper case; changed through the control API.
    pub status: String,
    pub category: String,
    /// `category` in lower case, as status webhooks' `pricing.category` carries it.
    pub pricing_category: Arc<str>,
    pub components: Value,
    /// What a send must carry, as the simulator reads `components` (its own reading, see
    /// [`crate::simulator::template`]).
    pub shape: TemplateShape,
}

/// The indexed world: WABAs, portfolios, numbers, templates, undeliverable recipients.
#[derive(Clone, Debug)]
pub(crate) struct World {
    pub portfolios: Vec<Portfolio>,
    pub wabas: Vec<Waba>,
    pub numbers: Vec<PhoneNumber>,
    pub templates: Vec<Template>,
    pub number_index: HashMap<String, usize>,
    pub waba_index: HashMap<String, usize>,
    pub template_index: HashMap<String, usize>,
    /// Recipients not on WhatsApp, as digits parsed to an integer.
    pub undeliverable: HashSet<u64>,
    /// Recipients who stopped marketing messages in WhatsApp (`POST /__sim/user-preferences`):
    /// marketing sends to them are accepted, then `failed` with 131050, as Meta does.
    pub marketing_stopped: HashSet<u64>,
    /// Every access token, for "is this token known at all" (190 before 100).
    pub tokens: HashSet<String>,
}

/// Which object a Graph id names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Node {
    Number(usize),
    Waba(usize),
    Template(usize),
}

impl World {
    /// Indexes and checks a configuration.
    pub fn build(config: &SimConfig) -> Result<World, SimConfigError> {
        config.behaviour.check()?;
        if config.workers == 0 {
            return Err(SimConfigError::Invalid("workers must be at least 1".into()));
        }
        let mut world = World {
            portfolios: Vec::new(),
            wabas: Vec::new(),
            numbers: Vec::new(),
            templates: Vec::new(),
            number_index: HashMap::new(),
            waba_index: HashMap::new(),
            template_index: HashMap::new(),
            undeliverable: HashSet::new(),
            marketing_stopped: HashSet::new(),
            tokens: HashSet::new(),
        };
        let mut ids: HashSet<&str> = HashSet::new();
        let mut portfolio_index: HashMap<String, usize> = HashMap::new();
        // The highest tier among each portfolio's numbers, so far.
        let mut portfolio_tiers: Vec<Option<Tier>> = Vec::new();
        for waba in &config.wabas {
            claim_id(&mut ids, &waba.id, "WABA")?;
            if waba.access_token.trim().is_empty() {
                return Err(SimConfigError::Invalid(format!(
                    "WABA {} has an empty access_token",
                    waba.id
                )));
            }
            let portfolio_id = waba.portfolio_id.clone().unwrap_or_else(|| waba.id.clone());
            let portfolio = *portfolio_index
                .entry(portfolio_id.clone())
                .or_insert_with(|| {
                    world.portfolios.push(Portfolio {
                        id: portfolio_id,
                        name: waba
                            .portfolio_name
                            .clone()
                            .unwrap_or_else(|| waba.name.clone()),
                        tier: Tier::NotSet,
                    });
                    portfolio_tiers.push(None);
                    world.portfolios.len() - 1
                });
            let waba_idx = world.wabas.len();
            let mut numbers = Vec::new();
            for number in &waba.phone_numbers {
                claim_id(&mut ids, &number.id, "phone number")?;
                let display_digits: String = number
                    .display_phone_number
                    .chars()
                    .filter(char::is_ascii_digit)
                    .collect();
                if display_digits.is_empty() {
                    return Err(SimConfigError::Invalid(format!(
                        "phone number {} has no digits in display_phone_number",
                        number.id
                    )));
                }
                let highest = &mut portfolio_tiers[portfolio];
                if highest.is_none_or(|t| tier_rank(number.tier) > tier_rank(t)) {
                    *highest = Some(number.tier);
                }
                numbers.push(world.numbers.len());
                world
                    .number_index
                    .insert(number.id.clone(), world.numbers.len());
                world.numbers.push(PhoneNumber {
                    id: number.id.clone(),
                    display_phone_number: number.display_phone_number.clone(),
                    display_digits,
                    verified_name: number.verified_name.clone(),
                    quality_rating: number.quality_rating.to_ascii_uppercase(),
                    throughput_level: number.throughput_level,
                    is_on_biz_app: number.is_on_biz_app,
                    waba: waba_idx,
                });
            }
            let mut templates = Vec::new();
            let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
            for template in &waba.templates {
                claim_id(&mut ids, &template.id, "template")?;
                let same = by_name.get(&template.name).into_iter().flatten();
                if same
                    .clone()
                    .any(|&i| world.templates[i].language == template.language)
                {
                    return Err(SimConfigError::Invalid(format!(
                        "WABA {} has two templates {} in {}",
                        waba.id, template.name, template.language
                    )));
                }
                let shape = check_locale(&template.language)
                    .and_then(|()| {
                        TemplateShape::read(
                            template.parameter_format.as_deref(),
                            &template.components,
                        )
                    })
                    .map_err(|e| {
                        SimConfigError::Invalid(format!(
                            "template {} ({}): {e}",
                            template.name, template.language
                        ))
                    })?;
                let idx = world.templates.len();
                templates.push(idx);
                by_name.entry(template.name.clone()).or_default().push(idx);
                world.template_index.insert(template.id.clone(), idx);
                world.templates.push(Template {
                    id: template.id.clone(),
                    name: template.name.clone(),
                    language: template.language.clone(),
                    status: template.status.trim().to_ascii_uppercase(),
                    category: template.category.trim().to_ascii_uppercase(),
                    pricing_category: Arc::from(template.category.trim().to_ascii_lowercase()),
                    components: template.components.clone(),
                    shape,
                });
            }
            world.tokens.insert(waba.access_token.clone());
            world.waba_index.insert(waba.id.clone(), waba_idx);
            world.wabas.push(Waba {
                id: waba.id.clone(),
                name: waba.name.clone(),
                portfolio,
                access_token: waba.access_token.clone(),
                numbers,
                templates,
                templates_by_name: by_name,
            });
        }
        for number in &config.undeliverable {
            let key = recipient_key(number).ok_or_else(|| {
                SimConfigError::Invalid(format!(
                    "undeliverable number {number:?} is not E.164 (+ and 7 to 15 digits)"
                ))
            })?;
            world.undeliverable.insert(key);
        }
        for number in &config.marketing_stopped {
            let key = recipient_key(number).ok_or_else(|| {
                SimConfigError::Invalid(format!(
                    "marketing_stopped number {number:?} is not E.164 (+ and 7 to 15 digits)"
                ))
            })?;
            world.marketing_stopped.insert(key);
        }
        // A portfolio without numbers has the new-portfolio limit.
        for (portfolio, tier) in world.portfolios.iter_mut().zip(portfolio_tiers) {
            portfolio.tier = tier.unwrap_or(Tier::T250);
        }
        Ok(world)
    }

    /// The object a Graph id names.
    pub fn node(&self, id: &str) -> Option<Node> {
        if let Some(&i) = self.number_index.get(id) {
            return Some(Node::Number(i));
        }
        if let Some(&i) = self.waba_index.get(id) {
            return Some(Node::Waba(i));
        }
        self.template_index.get(id).map(|&i| Node::Template(i))
    }

    /// The WABA owning an object.
    pub fn owner(&self, node: Node) -> usize {
        match node {
            Node::Number(i) => self.numbers[i].waba,
            Node::Waba(i) => i,
            Node::Template(i) => self
                .wabas
                .iter()
                .position(|w| w.templates.contains(&i))
                .unwrap_or(0),
        }
    }

    /// The template `name` in `language` of a WABA.
    pub fn template(&self, waba: usize, name: &str, language: &str) -> Option<usize> {
        self.wabas[waba]
            .templates_by_name
            .get(name)?
            .iter()
            .copied()
            .find(|&i| self.templates[i].language == language)
    }

    /// The portfolio of a number.
    pub fn portfolio_of(&self, number: usize) -> usize {
        self.wabas[self.numbers[number].waba].portfolio
    }
}

/// Graph ids are path segments (letters, digits, underscores), and each names one object: an id
/// is used once, whatever it names.
fn claim_id<'a>(ids: &mut HashSet<&'a str>, id: &'a str, what: &str) -> Result<(), SimConfigError> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(SimConfigError::Invalid(format!(
            "{what} id {id:?} must be non-empty letters, digits or underscores"
        )));
    }
    if !ids.insert(id) {
        return Err(SimConfigError::Invalid(format!(
            "the id {id} is used twice"
        )));
    }
    Ok(())
}

/// Order of tiers by limit (`NotSet` counts as 250).
pub(crate) fn tier_rank(tier: Tier) -> u64 {
    match tier.limit() {
        Some(limit) => u64::from(limit),
        None => u64::MAX,
    }
}

/// A recipient in strict E.164 (`+`, a non-zero first digit, 7 to 15 digits in all) as an integer
/// key; `None` for anything else.
pub(crate) fn recipient_key(to: &str) -> Option<u64> {
    let digits = to.strip_prefix('+')?;
    if !(7..=15).contains(&digits.len())
        || digits.starts_with('0')
        || !digits.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    digits.parse().ok()
}
