//! Opt-outs: who must not be messaged, by what signal, and how signals that arrive late or
//! twice are ordered. No I/O: storage keeps one row per tenant and phone and asks
//! [`decide`] what a signal does to it.
//!
//! # Decisions
//! - **Signals.** An inbound text that is an opt-out keyword, a `user_preferences` `stop` for
//!   `marketing_messages` and a `131050` failure suppress the phone for marketing; an opt-in
//!   keyword or a `resume` lifts it. A suppression added by hand (API, CSV import) is the
//!   operator's word; a later resume *from the user* still lifts it (the user asked for
//!   messages again, and the user's word is what WhatsApp's rules follow).
//! - **Order.** Each signal carries its own time (Meta's `timestamp`, or the moment of the
//!   request for hand-made changes). The row keeps the time of the latest signal applied,
//!   lifted rows included, so a `stop` older than the latest `resume` (Meta reorders and
//!   retries webhooks) changes nothing, and a duplicate changes nothing either.
//! - **Keywords.** The whole message, trimmed of spaces and punctuation around it, compared
//!   case- and accent-insensitively with the configured lists ([`KeywordMatcher`]): "Stop",
//!   " baja. " and "SAÍR" are opt-outs; "please stop sending" is not (a sentence is not a
//!   command, and a false opt-out silently loses a customer).
//! - **Scope.** Signals from users cover MARKETING templates ([`SuppressionScope::Marketing`]);
//!   a hand-added suppression may cover every category ([`SuppressionScope::All`],
//!   `suppress_all_categories`). UTILITY and AUTHENTICATION sends ignore marketing-only rows.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The default opt-out keywords (Spanish, English, Portuguese), compared folded.
pub const DEFAULT_OPT_OUT_KEYWORDS: &[&str] = &[
    "STOP",
    "STOP ALL",
    "STOPALL",
    "UNSUBSCRIBE",
    "OPT OUT",
    "OPTOUT",
    "CANCEL",
    "END",
    "QUIT",
    "BAJA",
    "DAR DE BAJA",
    "DARME DE BAJA",
    "PARAR",
    "CANCELAR",
    "DETENER",
    "NO MÁS",
    "NO MAS MENSAJES",
    "SAIR",
    "PARE",
    "DESCADASTRAR",
    "REMOVER",
];

/// The default opt-in (resume) keywords.
pub const DEFAULT_OPT_IN_KEYWORDS: &[&str] = &[
    "START",
    "UNSTOP",
    "SUBSCRIBE",
    "RESUME",
    "ALTA",
    "DAR DE ALTA",
    "SUSCRIBIR",
    "REANUDAR",
    "VOLVER",
    "VOLTAR",
    "ASSINAR",
    "RETOMAR",
];

/// What produced a suppression (stored as [`SuppressionSource::as_str`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuppressionSource {
    /// The user wrote an opt-out keyword.
    InboundKeyword,
    /// WhatsApp's own "stop marketing" (`user_preferences` webhook).
    UserPreferences,
    /// Meta failed a marketing message with 131050.
    Error131050,
    /// Added through `POST /api/v1/suppressions/`.
    Api,
    /// Imported by an operator (`mindo-bulk suppressions import`).
    Import,
}

impl SuppressionSource {
    pub const ALL: [SuppressionSource; 5] = [
        SuppressionSource::InboundKeyword,
        SuppressionSource::UserPreferences,
        SuppressionSource::Error131050,
        SuppressionSource::Api,
        SuppressionSource::Import,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SuppressionSource::InboundKeyword => "inbound_keyword",
            SuppressionSource::UserPreferences => "user_preferences",
            SuppressionSource::Error131050 => "error_131050",
            SuppressionSource::Api => "api",
            SuppressionSource::Import => "import",
        }
    }
}

impl FromStr for SuppressionSource {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SuppressionSource::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| format!("unknown suppression source {s:?}"))
    }
}

impl fmt::Display for SuppressionSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which template categories a suppression covers (stored as [`SuppressionScope::as_str`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuppressionScope {
    /// MARKETING templates only.
    Marketing,
    /// Every category (a hand-added suppression with `suppress_all_categories`).
    All,
}

impl SuppressionScope {
    pub fn as_str(self) -> &'static str {
        match self {
            SuppressionScope::Marketing => "marketing",
            SuppressionScope::All => "all",
        }
    }

    /// The stored name back; anything unknown reads as the wider `all` (never send by mistake).
    pub fn parse_stored(s: &str) -> SuppressionScope {
        match s {
            "marketing" => SuppressionScope::Marketing,
            _ => SuppressionScope::All,
        }
    }

    /// The scopes that stop a send of a template in `category` (Meta's category, any case).
    pub fn covering(category: &str) -> &'static [SuppressionScope] {
        if is_marketing(category) {
            &[SuppressionScope::Marketing, SuppressionScope::All]
        } else {
            &[SuppressionScope::All]
        }
    }

    /// The wider of two scopes (a user's stop does not narrow an operator's `all`).
    pub fn widest(self, other: SuppressionScope) -> SuppressionScope {
        if self == SuppressionScope::All || other == SuppressionScope::All {
            SuppressionScope::All
        } else {
            SuppressionScope::Marketing
        }
    }
}

/// Whether a template category is marketing (`MARKETING`; Meta's `MARKETING_LITE` too).
pub fn is_marketing(category: &str) -> bool {
    category.to_ascii_uppercase().starts_with("MARKETING")
}

/// What a signal asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Signal {
    /// Suppress.
    Stop,
    /// Lift.
    Resume,
}

/// A phone's stored suppression, as far as ordering cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredState {
    pub active: bool,
    pub scope: SuppressionScope,
    /// The time of the latest signal applied (unix ms).
    pub signal_at: i64,
}

/// What a signal does to a phone's row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Older than the latest signal applied: nothing changes.
    Stale,
    /// Suppress (or widen, or refresh the time of) the row; `newly` when it was not
    /// suppressed before (queued messages must then be stopped), `scope` the row's scope after.
    Suppress {
        newly: bool,
        scope: SuppressionScope,
    },
    /// Lift the suppression (`was_active`: whether anything was suppressed).
    Lift { was_active: bool },
}

/// What a `signal` at `at_ms` with `scope` does to `stored` (see the module doc). A signal
/// exactly as old as the latest one applies again (a duplicate, harmless); an older one is
/// stale.
pub fn decide(
    stored: Option<StoredState>,
    signal: Signal,
    scope: SuppressionScope,
    at_ms: i64,
) -> Decision {
    if let Some(s) = stored {
        if at_ms < s.signal_at {
            return Decision::Stale;
        }
    }
    match signal {
        Signal::Stop => match stored {
            Some(s) if s.active => {
                let widened = s.scope.widest(scope);
                Decision::Suppress {
                    newly: widened != s.scope,
                    scope: widened,
                }
            }
            _ => Decision::Suppress { newly: true, scope },
        },
        Signal::Resume => Decision::Lift {
            was_active: stored.is_some_and(|s| s.active),
        },
    }
}

/// Classifies inbound texts as opt-out or opt-in keywords.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeywordMatcher {
    opt_out: HashSet<String>,
    opt_in: HashSet<String>,
}

impl Default for KeywordMatcher {
    fn default() -> Self {
        KeywordMatcher::new(DEFAULT_OPT_OUT_KEYWORDS, DEFAULT_OPT_IN_KEYWORDS)
    }
}

impl KeywordMatcher {
    /// A matcher for these lists (each keyword folded as texts are); empty keywords are
    /// dropped. A keyword on both lists counts as an opt-out (the safe side).
    pub fn new<S: AsRef<str>>(opt_out: &[S], opt_in: &[S]) -> KeywordMatcher {
        let fold_all = |list: &[S]| -> HashSet<String> {
            list.iter()
                .map(|k| fold(k.as_ref()))
                .filter(|k| !k.is_empty())
                .collect()
        };
        let opt_out = fold_all(opt_out);
        let opt_in = fold_all(opt_in)
            .into_iter()
            .filter(|k| !opt_out.contains(k))
            .collect();
        KeywordMatcher { opt_out, opt_in }
    }

    /// What an inbound text asks for, if it is exactly a keyword.
    pub fn classify(&self, text: &str) -> Option<Signal> {
        let folded = fold(text);
        if self.opt_out.contains(&folded) {
            Some(Signal::Stop)
        } else if self.opt_in.contains(&folded) {
            Some(Signal::Resume)
        } else {
            None
        }
    }
}

/// A text reduced for comparison: accents removed, lowercase, inner runs of whitespace as
/// one space, and whitespace and punctuation around it trimmed.
pub fn fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        for c in word.chars() {
            for lower in c.to_lowercase() {
                out.push(strip_accent(lower));
            }
        }
    }
    out.trim_matches(|c: char| !c.is_alphanumeric()).to_owned()
}

/// The base letter of a lowercase accented Latin letter (Spanish, Portuguese, French,
/// German), else the letter itself.
fn strip_accent(c: char) -> char {
    match c {
        'á' | 'à' | 'â' | 'ã' | 'ä' | 'å' => 'a',
        'é' | 'è' | 'ê' | 'ë' => 'e',
        'í' | 'ì' | 'î' | 'ï' => 'i',
        'ó' | 'ò' | 'ô' | 'õ' | 'ö' => 'o',
        'ú' | 'ù' | 'û' | 'ü' => 'u',
        'ç' => 'c',
        'ñ' => 'n',
        'ý' | 'ÿ' => 'y',
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_match_whole_trimmed_messages_in_any_case_and_accent() {
        let m = KeywordMatcher::default();
        for text in [
            "STOP", "stop", " Stop. ", "baja", "¡BAJA!", "Sair", "SAÍR", "parar", "no más",
        ] {
            assert_eq!(m.classify(text), Some(Signal::Stop), "{text:?}");
        }
        for text in ["START", "alta", " Alta ", "Voltar"] {
            assert_eq!(m.classify(text), Some(Signal::Resume), "{text:?}");
        }
        for text in [
            "please stop sending",
            "stopping",
            "",
            "   ",
            "hola",
            "STOP STOP",
        ] {
            assert_eq!(m.classify(text), None, "{text:?}");
        }
    }

    #[test]
    fn configured_lists_replace_the_defaults_and_opt_out_wins_ties() {
        let m = KeywordMatcher::new(&["Désabonner", "X"], &["Réabonner", "x", ""]);
        assert_eq!(m.classify("desabonner"), Some(Signal::Stop));
        assert_eq!(m.classify("REABONNER"), Some(Signal::Resume));
        assert_eq!(m.classify("x"), Some(Signal::Stop));
        assert_eq!(m.classify("stop"), None);
    }

    #[test]
    fn fold_reduces_case_accents_and_spacing() {
        assert_eq!(fold("  Dar   DE baja!! "), "dar de baja");
        assert_eq!(fold("Ñandú"), "nandu");
        assert_eq!(fold("..."), "");
    }

    fn stored(active: bool, scope: SuppressionScope, signal_at: i64) -> Option<StoredState> {
        Some(StoredState {
            active,
            scope,
            signal_at,
        })
    }

    #[test]
    fn stops_and_resumes_are_ordered_by_their_own_time() {
        use SuppressionScope::*;
        assert_eq!(
            decide(None, Signal::Stop, Marketing, 10),
            Decision::Suppress {
                newly: true,
                scope: Marketing
            }
        );
        // A stop older than the latest resume does not suppress again.
        assert_eq!(
            decide(stored(false, Marketing, 20), Signal::Stop, Marketing, 10),
            Decision::Stale
        );
        // A resume older than the latest stop does not lift it.
        assert_eq!(
            decide(stored(true, Marketing, 20), Signal::Resume, Marketing, 10),
            Decision::Stale
        );
        assert_eq!(
            decide(stored(true, Marketing, 20), Signal::Resume, Marketing, 30),
            Decision::Lift { was_active: true }
        );
        assert_eq!(
            decide(stored(false, Marketing, 20), Signal::Stop, Marketing, 30),
            Decision::Suppress {
                newly: true,
                scope: Marketing
            }
        );
        // A duplicate stop changes nothing that matters.
        assert_eq!(
            decide(stored(true, Marketing, 20), Signal::Stop, Marketing, 20),
            Decision::Suppress {
                newly: false,
                scope: Marketing
            }
        );
        assert_eq!(
            decide(None, Signal::Resume, Marketing, 5),
            Decision::Lift { was_active: false }
        );
    }

    #[test]
    fn a_users_stop_never_narrows_an_operators_all_categories_suppression() {
        use SuppressionScope::*;
        assert_eq!(
            decide(stored(true, All, 20), Signal::Stop, Marketing, 30),
            Decision::Suppress {
                newly: false,
                scope: All
            }
        );
        assert_eq!(
            decide(stored(true, Marketing, 20), Signal::Stop, All, 30),
            Decision::Suppress {
                newly: true,
                scope: All
            }
        );
    }

    #[test]
    fn scopes_cover_categories() {
        use SuppressionScope::*;
        assert_eq!(SuppressionScope::covering("MARKETING"), &[Marketing, All]);
        assert_eq!(
            SuppressionScope::covering("marketing_lite"),
            &[Marketing, All]
        );
        assert_eq!(SuppressionScope::covering("UTILITY"), &[All]);
        assert_eq!(SuppressionScope::covering("AUTHENTICATION"), &[All]);
        assert_eq!(SuppressionScope::parse_stored("marketing"), Marketing);
        assert_eq!(SuppressionScope::parse_stored("???"), All);
        for s in SuppressionSource::ALL {
            assert_eq!(s.as_str().parse(), Ok(s));
        }
    }
}
