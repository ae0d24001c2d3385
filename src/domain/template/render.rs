//! Building Meta's `template.components` for one recipient (META.md §1).

use super::*;

impl TemplateSpec {
    /// Builds Meta's `template.components` array for one recipient (META.md §1).
    ///
    /// Header component (text parameters, or the media as `{"id":…}` when the value is all
    /// digits, `{"link":…}` otherwise), body component, then one component per dynamic button in
    /// index order. Text parameters carry `parameter_name` in NAMED templates only. Components
    /// without parameters are left out. Values that are missing are skipped rather than failing:
    /// call [`validate`](Self::validate) first.
    pub fn render<V, B>(&self, variables: &V, button_variables: &B) -> Value
    where
        V: ParameterValues + ?Sized,
        B: ParameterValues + ?Sized,
    {
        let mut components = Vec::with_capacity(2 + self.buttons.len());

        match &self.header {
            Some(HeaderSpec::Text { params }) => {
                let parameters: Vec<Value> = params
                    .iter()
                    .filter_map(|name| {
                        let key = self.header_text_key(name);
                        variables
                            .value(&key)
                            .map(|value| self.text_parameter(name, value))
                    })
                    .collect();
                push_component(&mut components, "header", parameters);
            }
            Some(HeaderSpec::Media { media }) => {
                if let Some(value) = variables.value(HEADER_MEDIA_KEY) {
                    let mut source = Map::with_capacity(1);
                    let source_key = if is_media_id(value) { "id" } else { "link" };
                    source.insert(source_key.to_owned(), Value::from(value));
                    let mut parameter = Map::with_capacity(2);
                    parameter.insert("type".to_owned(), Value::from(media.parameter_type()));
                    parameter.insert(media.parameter_type().to_owned(), Value::Object(source));
                    push_component(&mut components, "header", vec![Value::Object(parameter)]);
                }
            }
            None => {}
        }

        let parameters: Vec<Value> = self
            .body_params
            .iter()
            .filter_map(|name| {
                variables
                    .value(name)
                    .map(|value| self.text_parameter(name, value))
            })
            .collect();
        push_component(&mut components, "body", parameters);

        for button in self.dynamic_buttons() {
            let Some(value) = button_variables.value(&button_key(button)) else {
                continue;
            };
            let (sub_type, parameter) = match button.kind {
                ButtonKind::CopyCode => (
                    "copy_code",
                    object2("type", "coupon_code", "coupon_code", value),
                ),
                ButtonKind::Url | ButtonKind::Otp => {
                    ("url", object2("type", "text", "text", value))
                }
                _ => continue,
            };
            let mut component = Map::with_capacity(4);
            component.insert("type".to_owned(), Value::from("button"));
            component.insert("sub_type".to_owned(), Value::from(sub_type));
            component.insert("index".to_owned(), Value::from(button.index.to_string()));
            component.insert("parameters".to_owned(), Value::Array(vec![parameter]));
            components.push(Value::Object(component));
        }

        Value::Array(components)
    }

    /// `{"type":"text","text":v}`, plus `parameter_name` in NAMED templates.
    fn text_parameter(&self, name: &str, value: &str) -> Value {
        let mut parameter = Map::with_capacity(3);
        parameter.insert("type".to_owned(), Value::from("text"));
        if self.parameter_format == ParameterFormat::Named {
            parameter.insert("parameter_name".to_owned(), Value::from(name));
        }
        parameter.insert("text".to_owned(), Value::from(value));
        Value::Object(parameter)
    }
}

fn push_component(components: &mut Vec<Value>, kind: &str, parameters: Vec<Value>) {
    if parameters.is_empty() {
        return;
    }
    let mut component = Map::with_capacity(2);
    component.insert("type".to_owned(), Value::from(kind));
    component.insert("parameters".to_owned(), Value::Array(parameters));
    components.push(Value::Object(component));
}

/// `{k1: v1, k2: v2}` with string values.
fn object2(k1: &str, v1: &str, k2: &str, v2: &str) -> Value {
    let mut object = Map::with_capacity(2);
    object.insert(k1.to_owned(), Value::from(v1));
    object.insert(k2.to_owned(), Value::from(v2));
    Value::Object(object)
}
