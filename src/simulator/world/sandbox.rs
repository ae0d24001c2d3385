//! The demo world of `serve --sandbox` and of the tests: [`SimConfig::sandbox`].

use serde_json::Value;

use super::{Behaviour, PhoneNumberConfig, SimConfig, TemplateConfig, WabaConfig};
use crate::domain::tier::{ThroughputLevel, Tier};

impl SimConfig {
    /// The demo world of `serve --sandbox`: three WABAs, each its own portfolio, one number each:
    ///
    /// | WABA | number | tier | throughput |
    /// |---|---|---|---|
    /// | `102938475610001` Mindo Demo Starter | `106540352240001` +1 202-555-0101 | TIER_250 | STANDARD |
    /// | `102938475610002` Mindo Demo Growth | `106540352240002` +1 202-555-0102 | TIER_10K | STANDARD |
    /// | `102938475610003` Mindo Demo Enterprise | `106540352240003` +1 202-555-0103 | TIER_UNLIMITED | HIGH |
    ///
    /// Every WABA has the token `sandbox-token` and the same templates (ids differ per WABA):
    /// `welcome_message` (NAMED `{{customer_name}}`, es + en, MARKETING), `order_update`
    /// (POSITIONAL `{{1}}` `{{2}}` + a dynamic URL button, es + en, UTILITY), `promo_code` (POSITIONAL
    /// `{{1}}` + COPY_CODE and QUICK_REPLY buttons, es + en, MARKETING), `invoice_ready` (DOCUMENT
    /// header + `{{1}}`, es), `hello_world` (no parameters, en_US), `seasonal_sale` (PAUSED, es) and
    /// `account_alert` (REJECTED, en). `+14155550100` and `+14155550199` are not on WhatsApp;
    /// `+14155550150` stopped marketing messages (marketing sends to it fail with 131050).
    /// Statuses come with small human-visible delays (sent 100 ms, delivered 400 ms, read 1.5 s).
    pub fn sandbox() -> SimConfig {
        let numbers = [
            (
                "102938475610001",
                "Mindo Demo Starter",
                "106540352240001",
                "+1 202-555-0101",
                Tier::T250,
                ThroughputLevel::Standard,
            ),
            (
                "102938475610002",
                "Mindo Demo Growth",
                "106540352240002",
                "+1 202-555-0102",
                Tier::T10000,
                ThroughputLevel::Standard,
            ),
            (
                "102938475610003",
                "Mindo Demo Enterprise",
                "106540352240003",
                "+1 202-555-0103",
                Tier::Unlimited,
                ThroughputLevel::High,
            ),
        ];
        let wabas = numbers
            .iter()
            .enumerate()
            .map(
                |(i, (waba_id, name, number_id, display, tier, level))| WabaConfig {
                    id: (*waba_id).into(),
                    name: (*name).into(),
                    portfolio_id: None,
                    portfolio_name: None,
                    access_token: "sandbox-token".into(),
                    phone_numbers: vec![PhoneNumberConfig {
                        id: (*number_id).into(),
                        display_phone_number: (*display).into(),
                        verified_name: (*name).into(),
                        quality_rating: "GREEN".into(),
                        tier: *tier,
                        throughput_level: *level,
                        is_on_biz_app: false,
                    }],
                    templates: sandbox_templates(i + 1),
                },
            )
            .collect();
        SimConfig {
            undeliverable: vec!["+14155550100".into(), "+14155550199".into()],
            // Opted out of marketing in WhatsApp: marketing sends fail with 131050.
            marketing_stopped: vec!["+14155550150".into()],
            behaviour: Behaviour {
                sent_delay_ms: 100,
                delivered_delay_ms: 400,
                read_delay_ms: 1_500,
                ..Behaviour::default()
            },
            wabas,
            ..SimConfig::default()
        }
    }
}

/// The sandbox templates of WABA number `n` (1-based); ids are unique across WABAs.
fn sandbox_templates(n: usize) -> Vec<TemplateConfig> {
    let t = |seq: usize,
             name: &str,
             language: &str,
             status: &str,
             category: &str,
             format: &str,
             components: Value| TemplateConfig {
        id: format!("7700{n:02}{seq:09}"),
        name: name.into(),
        language: language.into(),
        status: status.into(),
        category: category.into(),
        parameter_format: Some(format.into()),
        components,
    };
    use serde_json::json;
    // The templates that exist in Spanish and English: the same components, translated.
    let welcome = |seq, language, text: &str, example: &str| {
        t(
            seq,
            "welcome_message",
            language,
            "APPROVED",
            "MARKETING",
            "NAMED",
            json!([
                {"type": "BODY", "text": text,
                 "example": {"body_text_named_params": [{"param_name": "customer_name", "example": example}]}},
                {"type": "FOOTER", "text": "Mindo Software"}
            ]),
        )
    };
    let order_update = |seq, language, text: &str, example: &str, label: &str| {
        t(
            seq,
            "order_update",
            language,
            "APPROVED",
            "UTILITY",
            "POSITIONAL",
            json!([
                {"type": "BODY", "text": text, "example": {"body_text": [["A-1042", example]]}},
                {"type": "BUTTONS", "buttons": [
                    {"type": "URL", "text": label, "url": "https://shop.example.com/orders/{{1}}",
                     "example": ["https://shop.example.com/orders/A-1042"]}
                ]}
            ]),
        )
    };
    let promo_code = |seq, language, header: &str, text: &str, decline: &str| {
        t(
            seq,
            "promo_code",
            language,
            "APPROVED",
            "MARKETING",
            "POSITIONAL",
            json!([
                {"type": "HEADER", "format": "TEXT", "text": header},
                {"type": "BODY", "text": text, "example": {"body_text": [["20"]]}},
                {"type": "BUTTONS", "buttons": [
                    {"type": "COPY_CODE", "example": "SAVE20"},
                    {"type": "QUICK_REPLY", "text": decline}
                ]}
            ]),
        )
    };
    vec![
        welcome(
            1,
            "es",
            "¡Hola {{customer_name}}! Gracias por sumarte a Mindo. Responde a este mensaje si necesitas ayuda.",
            "Juan",
        ),
        welcome(
            2,
            "en",
            "Hi {{customer_name}}! Thanks for joining Mindo. Reply to this message if you need help.",
            "John",
        ),
        order_update(
            3,
            "es",
            "Tu pedido {{1}} está {{2}}. Gracias por tu compra.",
            "en camino",
            "Ver pedido",
        ),
        order_update(
            4,
            "en",
            "Your order {{1}} is {{2}}. Thanks for shopping with us.",
            "on its way",
            "View order",
        ),
        promo_code(
            5,
            "es",
            "Un regalo para ti",
            "Tienes {{1}}% de descuento en tu próxima compra. Copia el código y úsalo al pagar.",
            "No me interesa",
        ),
        promo_code(
            6,
            "en",
            "A gift for you",
            "You get {{1}}% off your next order. Copy the code and use it at checkout.",
            "Not interested",
        ),
        t(
            7,
            "invoice_ready",
            "es",
            "APPROVED",
            "UTILITY",
            "POSITIONAL",
            json!([
                {"type": "HEADER", "format": "DOCUMENT",
                 "example": {"header_handle": ["https://files.example.com/invoice.pdf"]}},
                {"type": "BODY", "text": "Tu factura {{1}} ya está disponible.",
                 "example": {"body_text": [["F-0001"]]}}
            ]),
        ),
        t(
            8,
            "hello_world",
            "en_US",
            "APPROVED",
            "UTILITY",
            "POSITIONAL",
            json!([
                {"type": "HEADER", "format": "TEXT", "text": "Hello World"},
                {"type": "BODY", "text": "Welcome and congratulations!! This message demonstrates your ability to send a WhatsApp message notification from the Cloud API, hosted by Meta. Thank you for taking the time to test with us."},
                {"type": "FOOTER", "text": "WhatsApp Business Platform sample message"}
            ]),
        ),
        t(
            9,
            "seasonal_sale",
            "es",
            "PAUSED",
            "MARKETING",
            "NAMED",
            json!([
                {"type": "BODY", "text": "¡{{customer_name}}, llegó la temporada de ofertas! Hasta 50% en toda la tienda.",
                 "example": {"body_text_named_params": [{"param_name": "customer_name", "example": "Juan"}]}}
            ]),
        ),
        t(
            10,
            "account_alert",
            "en",
            "REJECTED",
            "UTILITY",
            "POSITIONAL",
            json!([
                {"type": "BODY", "text": "URGENT!!! Your account {{1}} will be closed. Click now.",
                 "example": {"body_text": [["12345"]]}}
            ]),
        ),
    ]
}
