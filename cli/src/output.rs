//! Printing: proto messages as JSON lines (the protobuf JSON mapping, through
//! the descriptors `taskloom-proto` ships), values and times for people,
//! and tables.

use std::io::Write;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use comfy_table::{Cell, Color, ContentArrangement, Table, presets};
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use taskloom_proto::taskloom::v1 as pb;

static POOL: LazyLock<Result<DescriptorPool, String>> = LazyLock::new(|| {
    DescriptorPool::decode(taskloom_proto::FILE_DESCRIPTOR_SET).map_err(|error| error.to_string())
});

fn pool() -> anyhow::Result<&'static DescriptorPool> {
    POOL.as_ref()
        .map_err(|error| anyhow::anyhow!("the built-in proto descriptors do not decode: {error}"))
}

fn descriptor(name: &str) -> anyhow::Result<prost_reflect::MessageDescriptor> {
    pool()?
        .get_message_by_name(name)
        .with_context(|| format!("no message {name} in the built-in descriptors"))
}

/// `message` (of proto type `name`, e.g. `taskloom.v1.Run`) in the protobuf
/// JSON mapping: camelCase names, enums by name, default fields left out.
pub fn to_json<M: prost::Message>(name: &str, message: &M) -> anyhow::Result<serde_json::Value> {
    let dynamic = DynamicMessage::decode(descriptor(name)?, message.encode_to_vec().as_slice())
        .with_context(|| format!("re-decode a {name}"))?;
    let options = SerializeOptions::new().stringify_64_bit_integers(false);
    dynamic
        .serialize_with_options(serde_json::value::Serializer, &options)
        .with_context(|| format!("encode a {name} as JSON"))
}

/// Prints `message` as one JSON line on stdout.
pub fn json_line<M: prost::Message>(name: &str, message: &M) -> anyhow::Result<()> {
    print_line(&to_json(name, message)?)
}

/// Prints one JSON value as a line and flushes, so a reader of a stream
/// sees each line as it happens.
pub fn print_line(value: &serde_json::Value) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{value}")?;
    stdout.flush()?;
    Ok(())
}

/// Reads a message of proto type `name` from JSON text in the protobuf JSON
/// mapping (camelCase or the proto's snake_case names).
pub fn from_json<M: prost::Message + Default>(name: &str, text: &str) -> anyhow::Result<M> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let dynamic = DynamicMessage::deserialize(descriptor(name)?, &mut deserializer)?;
    deserializer.end()?;
    Ok(dynamic.transcode_to()?)
}

/// Reads a message of proto type `name` from YAML text: the YAML document
/// read as the JSON it stands for, then as [`from_json`] would.
pub fn from_yaml<M: prost::Message + Default>(name: &str, text: &str) -> anyhow::Result<M> {
    let json: serde_json::Value = serde_norway::from_str(text)?;
    let dynamic = DynamicMessage::deserialize(descriptor(name)?, json)?;
    Ok(dynamic.transcode_to()?)
}

/// Whether tables colour their status cells, chosen once per command from
/// `--color` and the terminal.
static COLOR: AtomicBool = AtomicBool::new(false);

pub fn set_color(color: bool) {
    COLOR.store(color, Ordering::Relaxed);
}

fn colored() -> bool {
    COLOR.load(Ordering::Relaxed)
}

/// A table without outer borders, columns aligned, fitting the terminal
/// when there is one.
pub fn table<I, S>(header: I) -> Table
where
    I: IntoIterator<Item = S>,
    S: Into<comfy_table::Cell>,
{
    let mut table = Table::new();
    table.load_preset(presets::NOTHING).set_header(header);
    // Fit a terminal's width; a terminal that reports none (or a tiny
    // one, such as a pseudo-terminal never sized) would squeeze every
    // column to a letter, so there and on a pipe lines are as long as
    // they need.
    if table.width().is_some_and(|width| width >= 40) {
        table.set_content_arrangement(ContentArrangement::Dynamic);
    }
    if colored() {
        // comfy-table styles only on a terminal by itself; the choice was
        // made already (`--color always` on a pipe, `NO_COLOR` on a
        // terminal).
        table.enforce_styling();
    }
    table
}

/// A status cell, coloured by what the status means when colour is on:
/// green done or healthy, red failed, yellow waiting or paused, cyan going.
pub fn status_cell(text: impl Into<String>) -> Cell {
    let text = text.into();
    let cell = Cell::new(&text);
    if !colored() {
        return cell;
    }
    match status_color(&text) {
        Some(color) => cell.fg(color),
        None => cell,
    }
}

fn status_color(status: &str) -> Option<Color> {
    match status.to_ascii_uppercase().as_str() {
        "SUCCEEDED" | "COMPLETED" | "HEALTHY" | "OK" | "ACTIVE" | "SUCCESS" => Some(Color::Green),
        "FAILED" | "CANCELLED" | "TIMED_OUT" | "UNHEALTHY" | "REVOKED" | "EXPIRED" | "GONE" => {
            Some(Color::Red)
        }
        "WAITING_INPUT" | "PAUSED" | "QUEUED" | "READY" | "DRAINING" => Some(Color::Yellow),
        "RUNNING" | "LEASED" => Some(Color::Cyan),
        // A failed action in the audit log: its gRPC code name.
        other => code_color(other),
    }
}

/// Failed audit outcomes are gRPC code names.
fn code_color(name: &str) -> Option<Color> {
    const CODES: [&str; 15] = [
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "UNAUTHENTICATED",
    ];
    CODES.contains(&name).then_some(Color::Red)
}

pub fn print_table(table: &Table) {
    for line in table_lines(table) {
        println!("{line}");
    }
}

/// The table's lines. comfy-table pads each cell with a space at both
/// sides: each line's first and last are stripped so columns start at the
/// margin and lines do not end in blanks.
pub fn table_lines(table: &Table) -> Vec<String> {
    table
        .lines()
        .map(|line| {
            let line = line.strip_prefix(' ').unwrap_or(&line);
            line.trim_end().to_string()
        })
        .collect()
}

/// A value in one line for a table cell or a watch line.
pub fn value_text(value: Option<&pb::Value>) -> String {
    use pb::value::Kind;
    let Some(kind) = value.and_then(|value| value.kind.as_ref()) else {
        return String::new();
    };
    match kind {
        Kind::Text(text) => text.clone(),
        Kind::Number(number) => number.to_string(),
        Kind::Integer(integer) => integer.to_string(),
        Kind::Boolean(boolean) => boolean.to_string(),
        Kind::Json(json) => pb_value_to_json(json).to_string(),
        // A conversation's answer is its last message.
        Kind::ChatHistory(history) => history
            .messages
            .last()
            .map(|message| message.content.clone())
            .unwrap_or_default(),
        Kind::Vector(vector) => format!("vector of {} floats", vector.values.len()),
    }
}

/// Cuts `text` to one line of at most `max` characters.
pub fn short(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or("");
    let cut = line.chars().count() > max || line.len() < text.trim_end().len();
    if cut {
        let kept: String = line.chars().take(max.saturating_sub(1)).collect();
        format!("{kept}…")
    } else {
        line.to_string()
    }
}

pub fn time(timestamp: Option<&prost_types::Timestamp>) -> String {
    match timestamp {
        // RFC 3339 in UTC to the second: enough to tell runs apart.
        Some(timestamp) => {
            let text = timestamp.to_string();
            match text.split_once('.') {
                Some((seconds, _)) => format!("{seconds}Z"),
                None => text,
            }
        }
        None => String::new(),
    }
}

pub fn pb_value_to_json(value: &prost_types::Value) -> serde_json::Value {
    use prost_types::value::Kind;
    match &value.kind {
        None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::NumberValue(number)) => serde_json::Number::from_f64(*number)
            .map_or(serde_json::Value::Null, serde_json::Value::Number),
        Some(Kind::StringValue(text)) => serde_json::Value::String(text.clone()),
        Some(Kind::BoolValue(boolean)) => serde_json::Value::Bool(*boolean),
        Some(Kind::StructValue(object)) => serde_json::Value::Object(
            object
                .fields
                .iter()
                .map(|(key, value)| (key.clone(), pb_value_to_json(value)))
                .collect(),
        ),
        Some(Kind::ListValue(list)) => {
            serde_json::Value::Array(list.values.iter().map(pb_value_to_json).collect())
        }
    }
}

pub fn json_to_pb_value(value: &serde_json::Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match value {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(boolean) => Kind::BoolValue(*boolean),
        serde_json::Value::Number(number) => Kind::NumberValue(number.as_f64().unwrap_or(0.0)),
        serde_json::Value::String(text) => Kind::StringValue(text.clone()),
        serde_json::Value::Array(values) => Kind::ListValue(prost_types::ListValue {
            values: values.iter().map(json_to_pb_value).collect(),
        }),
        serde_json::Value::Object(object) => Kind::StructValue(prost_types::Struct {
            fields: object
                .iter()
                .map(|(key, value)| (key.clone(), json_to_pb_value(value)))
                .collect(),
        }),
    };
    prost_types::Value { kind: Some(kind) }
}

/// `RUN_STATUS_SUCCEEDED` → `SUCCEEDED`.
pub fn run_status(status: i32) -> String {
    pb::RunStatus::try_from(status)
        .map(|status| {
            status
                .as_str_name()
                .trim_start_matches("RUN_STATUS_")
                .to_string()
        })
        .unwrap_or_else(|_| status.to_string())
}

pub fn attempt_status(status: i32) -> String {
    pb::AttemptStatus::try_from(status)
        .map(|status| {
            status
                .as_str_name()
                .trim_start_matches("ATTEMPT_STATUS_")
                .to_string()
        })
        .unwrap_or_else(|_| status.to_string())
}

pub fn event_type(kind: i32) -> String {
    pb::RunEventType::try_from(kind)
        .map(|kind| {
            kind.as_str_name()
                .trim_start_matches("RUN_EVENT_TYPE_")
                .to_string()
        })
        .unwrap_or_else(|_| kind.to_string())
}

/// A gRPC status code as the gRPC specification spells it (`NOT_FOUND`).
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_have_their_colours() {
        assert_eq!(status_color("SUCCEEDED"), Some(Color::Green));
        assert_eq!(status_color("healthy"), Some(Color::Green));
        assert_eq!(status_color("FAILED"), Some(Color::Red));
        assert_eq!(status_color("NOT_FOUND"), Some(Color::Red));
        assert_eq!(status_color("WAITING_INPUT"), Some(Color::Yellow));
        assert_eq!(status_color("paused"), Some(Color::Yellow));
        assert_eq!(status_color("RUNNING"), Some(Color::Cyan));
        assert_eq!(status_color("UNSPECIFIED"), None);
        assert_eq!(status_color(""), None);
    }
}
