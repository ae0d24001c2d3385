//! A send's recipients once read: each phone normalised to E.164 (on all cores for a large
//! send), the values checked against the template, and duplicates dropped after
//! normalisation, the first occurrence winning.
//!
//! What the request's JSON held where a string belongs (a number, an array, nothing) is the
//! HTTP layer's to report; it maps the [`Problem`]s found here to its error items.

use std::collections::{BTreeMap, HashSet};

use super::phone::{PhoneError, E164};
use super::template::TemplateSpec;

/// A recipient's variables or button variables: key → value.
pub type Values = BTreeMap<String, String>;

/// Recipients below this many are parsed on the calling thread.
const PARALLEL_FROM: usize = 2_000;
/// The most threads that parse phones for one send.
const MAX_THREADS: usize = 8;

/// What is wrong with one field of one recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// `phone`, `variables.<key>` or `button_variables.<key>`.
    pub field: String,
    /// The value given, where echoing it helps (a phone), untruncated.
    pub value: Option<String>,
    /// What is wrong.
    pub reason: String,
}

/// Every item's phone, parsed on up to 8 threads (the numbering-plan check is the costly part
/// of validating a large send), in the items' order. `phone` picks an item's phone; an item
/// without one gets `Err(Empty)`, which the caller does not use.
pub fn parse_phones<T, F>(items: &[T], phone: F) -> Vec<Result<E164, PhoneError>>
where
    T: Sync,
    F: Fn(&T) -> Option<&str> + Sync,
{
    let parse = |chunk: &[T]| -> Vec<Result<E164, PhoneError>> {
        chunk
            .iter()
            .map(|item| phone(item).map_or(Err(PhoneError::Empty), E164::parse))
            .collect()
    };
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(MAX_THREADS);
    if threads < 2 || items.len() < PARALLEL_FROM {
        return parse(items);
    }
    let size = items.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let parse = &parse;
        let handles: Vec<_> = items
            .chunks(size)
            .map(|chunk| (chunk, scope.spawn(move || parse(chunk))))
            .collect();
        handles
            .into_iter()
            // A parser thread cannot panic (E164::parse never does); if one did, its share is
            // parsed here again so every index keeps its answer.
            .flat_map(|(chunk, h)| h.join().unwrap_or_else(|_| parse(chunk)))
            .collect()
    })
}

/// A phone's verdict: the number, or the problem, echoing what was given.
pub fn check_phone(raw: &str, parsed: Result<E164, PhoneError>) -> Result<E164, Problem> {
    parsed.map_err(|e| Problem {
        field: "phone".into(),
        value: Some(raw.to_owned()),
        reason: e.reason(),
    })
}

/// What is wrong with a recipient's values for this template: none when they fit.
pub fn check_values(
    spec: &TemplateSpec,
    variables: &Values,
    button_variables: &Values,
) -> Vec<Problem> {
    match spec.validate(variables, button_variables) {
        Ok(()) => Vec::new(),
        Err(problems) => problems
            .into_iter()
            .map(|p| Problem {
                field: p.field,
                value: None,
                reason: p.reason,
            })
            .collect(),
    }
}

/// A send's valid recipients in request order, each phone once: a later recipient with a
/// phone already kept (after normalisation) is dropped.
#[derive(Debug)]
pub struct Unique<T> {
    seen: HashSet<E164>,
    kept: Vec<T>,
}

impl<T> Unique<T> {
    /// Room for `capacity` recipients.
    pub fn with_capacity(capacity: usize) -> Unique<T> {
        Unique {
            seen: HashSet::with_capacity(capacity),
            kept: Vec::with_capacity(capacity),
        }
    }

    /// Keeps `make(phone)` unless this phone was kept already; whether it was kept.
    pub fn add(&mut self, phone: E164, make: impl FnOnce(E164) -> T) -> bool {
        if !self.seen.insert(phone.clone()) {
            return false;
        }
        self.kept.push(make(phone));
        true
    }

    /// The recipients kept, in request order.
    pub fn into_vec(self) -> Vec<T> {
        self.kept
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec() -> TemplateSpec {
        let components = json!([{"type": "BODY", "text": "Hola {{name}}",
            "example": {"body_text_named_params": [{"param_name": "name", "example": "Ana"}]}}]);
        TemplateSpec::from_meta(Some("NAMED"), &components).unwrap()
    }

    fn values(pairs: &[(&str, &str)]) -> Values {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn phones_parsed_in_parallel_keep_their_order() {
        let items: Vec<Option<String>> = (0..5_001)
            .map(|i| match i % 3 {
                0 => Some(format!("+54911{:08}", 30_000_000 + i)),
                1 => Some("not a phone".into()),
                _ => None,
            })
            .collect();
        let parsed = parse_phones(&items, |p| p.as_deref());
        assert_eq!(parsed.len(), items.len());
        for (i, result) in parsed.iter().enumerate() {
            match i % 3 {
                0 => assert_eq!(
                    result.as_ref().unwrap().as_str(),
                    format!("+54911{:08}", 30_000_000 + i)
                ),
                1 => assert_eq!(result, &Err(PhoneError::InvalidCharacters)),
                _ => assert_eq!(result, &Err(PhoneError::Empty)),
            }
        }
    }

    #[test]
    fn a_bad_phone_is_a_problem_that_echoes_it() {
        let raw = "+54 9 11 3000-0001";
        let phone = check_phone(raw, E164::parse(raw)).unwrap();
        assert_eq!(phone.as_str(), "+5491130000001");
        assert_eq!(
            check_phone("+12", E164::parse("+12")),
            Err(Problem {
                field: "phone".into(),
                value: Some("+12".into()),
                reason: E164::parse("+12").unwrap_err().reason(),
            })
        );
    }

    #[test]
    fn values_are_checked_against_the_template() {
        let spec = spec();
        assert_eq!(
            check_values(&spec, &values(&[("name", "Ana")]), &Values::new()),
            []
        );
        let problems = check_values(&spec, &values(&[("nombre", "Ana")]), &Values::new());
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["variables.name", "variables.nombre"]);
        assert!(problems.iter().all(|p| p.value.is_none()));
        assert!(problems[0].reason.starts_with("missing"), "{problems:?}");
        assert!(problems[1].reason.starts_with("unknown"), "{problems:?}");
    }

    #[test]
    fn the_first_occurrence_of_a_number_wins() {
        let mut unique = Unique::with_capacity(3);
        for (i, raw) in ["+54 9 11 3000-0001", "+12025550100", "0054 9 11 3000 0001"]
            .into_iter()
            .enumerate()
        {
            let phone = E164::parse(raw).unwrap();
            let kept = unique.add(phone, |phone| (i, phone.into_string()));
            assert_eq!(kept, i < 2, "{raw}");
        }
        assert_eq!(
            unique.into_vec(),
            [
                (0, "+5491130000001".to_owned()),
                (1, "+12025550100".to_owned())
            ]
        );
    }
}
