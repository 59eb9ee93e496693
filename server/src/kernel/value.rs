//! Typed values (`taskloom.v1.Value`): encoding for storage, the text a
//! branch operator compares, the JSON a template sees, and coercion of
//! contenox-style `(input, input_type)` pairs.

use prost::Message;
use prost_types::value::Kind as JsonKind;
use serde_json::json;

use crate::proto::taskloom::v1::{self as pb, value::Kind};

/// Encodes a value for storage.
pub fn encode(value: &pb::Value) -> Vec<u8> {
    value.encode_to_vec()
}

/// Decodes a stored value.
pub fn decode(bytes: &[u8]) -> Result<pb::Value, String> {
    pb::Value::decode(bytes).map_err(|error| format!("stored value does not decode: {error}"))
}

pub fn text(text: impl Into<String>) -> pb::Value {
    pb::Value {
        kind: Some(Kind::Text(text.into())),
    }
}

pub fn number(number: f64) -> pb::Value {
    pb::Value {
        kind: Some(Kind::Number(number)),
    }
}

pub fn json_value(value: serde_json::Value) -> pb::Value {
    pb::Value {
        kind: Some(Kind::Json(to_proto_json(&value))),
    }
}

/// The value's type tag.
pub fn value_type(value: &pb::Value) -> pb::ValueType {
    match &value.kind {
        None => pb::ValueType::Unspecified,
        Some(Kind::Text(_)) => pb::ValueType::Text,
        Some(Kind::Number(_)) => pb::ValueType::Number,
        Some(Kind::Integer(_)) => pb::ValueType::Integer,
        Some(Kind::Boolean(_)) => pb::ValueType::Boolean,
        Some(Kind::Json(_)) => pb::ValueType::Json,
        Some(Kind::ChatHistory(_)) => pb::ValueType::ChatHistory,
        Some(Kind::Vector(_)) => pb::ValueType::Vector,
    }
}

/// The text branch operators compare and prompts embed: text as is,
/// numbers in their shortest form, JSON compact (a JSON string unquoted),
/// a chat history's last message, a vector as a JSON array.
pub fn as_text(value: &pb::Value) -> String {
    match &value.kind {
        None => String::new(),
        Some(Kind::Text(text)) => text.clone(),
        Some(Kind::Number(number)) => format_number(*number),
        Some(Kind::Integer(integer)) => integer.to_string(),
        Some(Kind::Boolean(boolean)) => boolean.to_string(),
        Some(Kind::Json(json)) => match &json.kind {
            Some(JsonKind::StringValue(text)) => text.clone(),
            _ => from_proto_json(json).to_string(),
        },
        Some(Kind::ChatHistory(history)) => history
            .messages
            .last()
            .map(|message| message.content.clone())
            .unwrap_or_default(),
        Some(Kind::Vector(vector)) => json!(vector.values).to_string(),
    }
}

fn format_number(number: f64) -> String {
    if number.fract() == 0.0 && number.abs() < 1e15 {
        format!("{}", number as i64)
    } else {
        number.to_string()
    }
}

/// The JSON a template sees for a value: scalars as JSON scalars, JSON as
/// is, a chat history as its last message's text (templates do not see its
/// other messages), a vector as an array.
pub fn template_json(value: &pb::Value) -> serde_json::Value {
    match &value.kind {
        None => serde_json::Value::Null,
        Some(Kind::Text(text)) => json!(text),
        Some(Kind::Number(number)) => json!(number),
        Some(Kind::Integer(integer)) => json!(integer),
        Some(Kind::Boolean(boolean)) => json!(boolean),
        Some(Kind::Json(json)) => from_proto_json(json),
        Some(Kind::ChatHistory(_)) => json!(as_text(value)),
        Some(Kind::Vector(vector)) => json!(vector.values),
    }
}

/// Converts `google.protobuf.Value` to serde JSON.
pub fn from_proto_json(value: &prost_types::Value) -> serde_json::Value {
    match &value.kind {
        None | Some(JsonKind::NullValue(_)) => serde_json::Value::Null,
        // JSON has one number type; whole numbers print without `.0`.
        Some(JsonKind::NumberValue(number)) if number.fract() == 0.0 && number.abs() < 1e15 => {
            json!(*number as i64)
        }
        Some(JsonKind::NumberValue(number)) => json!(number),
        Some(JsonKind::StringValue(text)) => json!(text),
        Some(JsonKind::BoolValue(boolean)) => json!(boolean),
        Some(JsonKind::StructValue(object)) => serde_json::Value::Object(
            object
                .fields
                .iter()
                .map(|(key, value)| (key.clone(), from_proto_json(value)))
                .collect(),
        ),
        Some(JsonKind::ListValue(list)) => {
            serde_json::Value::Array(list.values.iter().map(from_proto_json).collect())
        }
    }
}

/// Converts serde JSON to `google.protobuf.Value`.
pub fn to_proto_json(value: &serde_json::Value) -> prost_types::Value {
    let kind = match value {
        serde_json::Value::Null => JsonKind::NullValue(0),
        serde_json::Value::Bool(boolean) => JsonKind::BoolValue(*boolean),
        serde_json::Value::Number(number) => JsonKind::NumberValue(number.as_f64().unwrap_or(0.0)),
        serde_json::Value::String(text) => JsonKind::StringValue(text.clone()),
        serde_json::Value::Array(items) => JsonKind::ListValue(prost_types::ListValue {
            values: items.iter().map(to_proto_json).collect(),
        }),
        serde_json::Value::Object(object) => JsonKind::StructValue(prost_types::Struct {
            fields: object
                .iter()
                .map(|(key, value)| (key.clone(), to_proto_json(value)))
                .collect(),
        }),
    };
    prost_types::Value { kind: Some(kind) }
}

/// Interprets a contenox-style JSON input by its declared type (`string` or
/// `text`, `number`, `integer`, `boolean`, `json`, `chat_history`,
/// `vector`; empty infers from the JSON shape). The error says what is
/// wrong, for the `input` field.
pub fn from_json_input(
    input: Option<&prost_types::Value>,
    input_type: &str,
) -> Result<pb::Value, String> {
    let json = input
        .map(from_proto_json)
        .unwrap_or(serde_json::Value::Null);
    // The value a type reads from the JSON, or what the type needs.
    let needs = |kind: Option<Kind>, what: &str| {
        kind.ok_or_else(|| format!("input_type {input_type:?} needs {what}"))
    };
    let kind = match input_type.trim().to_ascii_lowercase().as_str() {
        "" => match &json {
            serde_json::Value::Null => Kind::Text(String::new()),
            serde_json::Value::String(text) => Kind::Text(text.clone()),
            serde_json::Value::Bool(boolean) => Kind::Boolean(*boolean),
            serde_json::Value::Number(number) => match number.as_i64() {
                Some(integer) => Kind::Integer(integer),
                None => Kind::Number(number.as_f64().unwrap_or(0.0)),
            },
            _ => Kind::Json(to_proto_json(&json)),
        },
        "string" | "text" => match &json {
            serde_json::Value::String(text) => Kind::Text(text.clone()),
            other => {
                return Err(format!(
                    "input_type {input_type:?} needs a JSON string, got {other}"
                ));
            }
        },
        "number" | "float" => needs(json.as_f64().map(Kind::Number), "a JSON number")?,
        "integer" | "int" => needs(json.as_i64().map(Kind::Integer), "a whole JSON number")?,
        "boolean" | "bool" => needs(json.as_bool().map(Kind::Boolean), "true or false")?,
        "json" | "object" | "any" => Kind::Json(to_proto_json(&json)),
        "chat_history" | "chat" => Kind::ChatHistory(chat_history_from_json(&json)?),
        "vector" => match &json {
            serde_json::Value::Array(items) => Kind::Vector(pb::Vector {
                values: items
                    .iter()
                    .map(|item| item.as_f64().map(|v| v as f32))
                    .collect::<Option<Vec<f32>>>()
                    .ok_or("input_type \"vector\" needs an array of numbers")?,
            }),
            _ => return Err("input_type \"vector\" needs an array of numbers".to_string()),
        },
        other => {
            return Err(format!(
                "unknown input_type {other:?}; use string, number, integer, boolean, json, chat_history or vector"
            ));
        }
    };
    Ok(pb::Value { kind: Some(kind) })
}

/// A chat history from `[{"role", "content"}, …]` or `{"messages": [...]}`
/// (a bare string becomes one user message).
fn chat_history_from_json(json: &serde_json::Value) -> Result<pb::ChatHistory, String> {
    let messages = match json {
        serde_json::Value::String(text) => {
            return Ok(pb::ChatHistory {
                messages: vec![pb::ChatMessage {
                    role: "user".into(),
                    content: text.clone(),
                }],
                ..Default::default()
            });
        }
        serde_json::Value::Array(items) => items,
        serde_json::Value::Object(object) => match object.get("messages") {
            Some(serde_json::Value::Array(items)) => items,
            _ => return Err("a chat_history object needs a \"messages\" array".to_string()),
        },
        _ => {
            return Err(
                "input_type \"chat_history\" needs an array of {role, content}".to_string(),
            );
        }
    };
    let mut history = pb::ChatHistory::default();
    for (index, item) in messages.iter().enumerate() {
        let role = item.get("role").and_then(|v| v.as_str());
        let content = item.get("content").and_then(|v| v.as_str());
        match (role, content) {
            (Some(role), Some(content))
                if matches!(role, "system" | "user" | "assistant" | "tool") =>
            {
                history.messages.push(pb::ChatMessage {
                    role: role.to_string(),
                    content: content.to_string(),
                })
            }
            _ => {
                return Err(format!(
                    "messages[{index}] needs a role (system, user, assistant, tool) and a string content"
                ));
            }
        }
    }
    Ok(history)
}

/// Checks a typed value for internal consistency (JSON numbers finite,
/// chat roles known).
pub fn check_typed(value: &pb::Value) -> Result<(), String> {
    match &value.kind {
        None => Err("a value needs one kind set".to_string()),
        Some(Kind::Number(number)) if !number.is_finite() => {
            Err("number must be finite".to_string())
        }
        Some(Kind::ChatHistory(history)) => {
            for (index, message) in history.messages.iter().enumerate() {
                if !matches!(
                    message.role.as_str(),
                    "system" | "user" | "assistant" | "tool"
                ) {
                    return Err(format!(
                        "chat_history.messages[{index}].role must be system, user, assistant or tool"
                    ));
                }
            }
            Ok(())
        }
        Some(Kind::Vector(vector)) if vector.values.iter().any(|v| !v.is_finite()) => {
            Err("vector values must be finite".to_string())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proto(json: serde_json::Value) -> prost_types::Value {
        to_proto_json(&json)
    }

    #[test]
    fn contenox_inputs_are_typed() {
        let value = from_json_input(Some(&proto(json!("hi"))), "string").unwrap();
        assert_eq!(value, text("hi"));
        assert_eq!(
            from_json_input(Some(&proto(json!(3))), "").unwrap().kind,
            Some(Kind::Integer(3))
        );
        assert_eq!(
            from_json_input(Some(&proto(json!(2.5))), "number").unwrap(),
            number(2.5)
        );
        assert!(from_json_input(Some(&proto(json!(2.5))), "integer").is_err());
        assert!(from_json_input(Some(&proto(json!({"a": 1}))), "string").is_err());
        assert!(from_json_input(Some(&proto(json!("x"))), "telepathy").is_err());
        let chat = from_json_input(
            Some(&proto(json!([{"role": "user", "content": "hello"}]))),
            "chat_history",
        )
        .unwrap();
        assert_eq!(as_text(&chat), "hello");
        assert!(from_json_input(Some(&proto(json!([{"role": "god"}]))), "chat_history").is_err());
        let vector = from_json_input(Some(&proto(json!([1, 2.5]))), "vector").unwrap();
        assert_eq!(value_type(&vector), pb::ValueType::Vector);
    }

    #[test]
    fn text_forms() {
        assert_eq!(as_text(&number(3.0)), "3");
        assert_eq!(as_text(&number(2.5)), "2.5");
        assert_eq!(as_text(&json_value(json!("quoted"))), "quoted");
        assert_eq!(as_text(&json_value(json!({"a": [1]}))), r#"{"a":[1]}"#);
        assert_eq!(
            as_text(&pb::Value {
                kind: Some(Kind::Boolean(true))
            }),
            "true"
        );
    }

    #[test]
    fn round_trip() {
        let value = json_value(json!({"k": "v"}));
        assert_eq!(decode(&encode(&value)).unwrap(), value);
        assert!(decode(&[0xff, 0xff]).is_err());
    }
}
