//! Templates from Meta's JSON (`TemplateSpec::from_meta`), a recipient's values checked
//! (`validate`) and rendered (`render`). The input is a JSON object
//! `{"parameter_format", "components", "variables", "button_variables"}`; nothing may panic,
//! and values that pass validation render to a components array.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use mindo_bulk::domain::template::TemplateSpec;
use serde_json::Value;

fn strings(value: Option<&Value>) -> BTreeMap<String, String> {
    value
        .and_then(Value::as_object)
        .map(|map| {
            map.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let format = input.get("parameter_format").and_then(Value::as_str);
    let components = input.get("components").cloned().unwrap_or(Value::Null);
    let Ok(spec) = TemplateSpec::from_meta(format, &components) else {
        return;
    };
    let _ = spec.expected_variables();
    let _ = spec.expected_button_variables();
    let _ = spec.variables_info();
    let variables = strings(input.get("variables"));
    let buttons = strings(input.get("button_variables"));
    let rendered = spec.render(&variables, &buttons);
    assert!(rendered.is_array(), "{rendered}");
    if let Err(problems) = spec.validate(&variables, &buttons) {
        assert!(!problems.is_empty());
    }
    // Every expected key given a plain value: rendered, whatever validation says of it.
    let filled: BTreeMap<String, String> = spec
        .expected_variables()
        .into_iter()
        .map(|k| (k, "Ana".to_owned()))
        .collect();
    let filled_buttons: BTreeMap<String, String> = spec
        .expected_button_variables()
        .into_iter()
        .map(|k| (k, "ABC123".to_owned()))
        .collect();
    let _ = spec.validate(&filled, &filled_buttons);
    assert!(spec.render(&filled, &filled_buttons).is_array());
});
