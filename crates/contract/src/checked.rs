//! The codec of every generated server and client: prost's, plus one check
//! of every text field of every message before it is decoded.
//!
//! A NUL byte is valid UTF-8, so prost accepts it in a `string`, but
//! PostgreSQL refuses it in text and the call used to end INTERNAL wherever
//! such a string reached a query. Checking here, on the wire bytes against
//! the contract's own descriptors, covers every string field of every
//! request of every service (nested messages, repeated fields, map keys and
//! values, `google.protobuf.Struct` values) in one place, including fields
//! added later, where a check in each service's request validation would
//! have to be remembered field by field. The refusal is INVALID_ARGUMENT
//! with a `google.rpc.BadRequest` naming the field's path
//! (`identifiers[1].value`, `attributes[plan].string_value`), the form the
//! runtime's violations collector uses.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::OnceLock;

use prost::bytes::Buf;
use prost::{Message, Name};
use prost_types::field_descriptor_proto::{Label, Type};
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic::{Code, Status};
use tonic_prost::ProstEncoder;
use tonic_types::{ErrorDetails, StatusExt};

/// What a violation says about a text field holding a NUL byte.
pub const NUL_DESCRIPTION: &str =
    "contains a NUL byte (U+0000), which no text field may hold; remove it";

/// Deepest nesting the check follows (prost's own decoder stops at 100).
const MAX_DEPTH: usize = 100;

/// prost's codec with the text check on decoding.
#[derive(Debug, Clone)]
pub struct CheckedCodec<T, U> {
    marker: PhantomData<(T, U)>,
}

impl<T, U> Default for CheckedCodec<T, U> {
    fn default() -> Self {
        Self {
            marker: PhantomData,
        }
    }
}

impl<T, U> Codec for CheckedCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Name + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = CheckedDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        CheckedDecoder {
            marker: PhantomData,
        }
    }
}

/// Decodes `U` after checking its text fields.
#[derive(Debug, Clone)]
pub struct CheckedDecoder<U> {
    marker: PhantomData<U>,
}

impl<U: Message + Name + Default> Decoder for CheckedDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        // Zero-copy: the frame is one contiguous buffer.
        let bytes = buf.copy_to_bytes(buf.remaining());
        if let Some(field) = nul_field(&U::full_name(), &bytes) {
            let message = format!("invalid request: {field}: {NUL_DESCRIPTION}");
            let mut details = ErrorDetails::new();
            details.add_bad_request_violation(field, NUL_DESCRIPTION);
            return Err(Status::with_error_details(
                Code::InvalidArgument,
                message,
                details,
            ));
        }
        U::decode(bytes)
            .map(Some)
            // As prost's codec does: gRPC's status table says INTERNAL.
            .map_err(|error| Status::internal(error.to_string()))
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}

/// The path of the first text field of the message `type_name`, encoded in
/// `bytes`, that holds a NUL byte; `None` when there is none (or when the
/// bytes are malformed, which the decoder then reports).
pub fn nul_field(type_name: &str, bytes: &[u8]) -> Option<String> {
    let messages = messages();
    let message = messages.get(type_name)?;
    walk(messages, message, bytes, "", 0)
}

/// What the check needs of one field.
#[derive(Debug)]
struct FieldInfo {
    name: String,
    repeated: bool,
    kind: FieldKind,
}

#[derive(Debug)]
enum FieldKind {
    Text,
    Message(String),
    Other,
}

/// What the check needs of one message type.
#[derive(Debug, Default)]
struct MessageInfo {
    fields: HashMap<u32, FieldInfo>,
    map_entry: bool,
}

/// Every message type of the contract (and the well-known types it
/// imports), by full name, read once from the descriptor set.
fn messages() -> &'static HashMap<String, MessageInfo> {
    static MESSAGES: OnceLock<HashMap<String, MessageInfo>> = OnceLock::new();
    MESSAGES.get_or_init(|| {
        let mut messages = HashMap::new();
        // The descriptor set is generated with the crate; were it unreadable,
        // no message would be checked and the build's own tests would say so.
        let Ok(set) = prost_types::FileDescriptorSet::decode(crate::FILE_DESCRIPTOR_SET) else {
            return messages;
        };
        for file in &set.file {
            let package = file.package();
            for message in &file.message_type {
                collect(package, message, &mut messages);
            }
        }
        messages
    })
}

fn collect(
    scope: &str,
    message: &prost_types::DescriptorProto,
    messages: &mut HashMap<String, MessageInfo>,
) {
    let full_name = if scope.is_empty() {
        message.name().to_string()
    } else {
        format!("{scope}.{}", message.name())
    };
    let mut info = MessageInfo {
        map_entry: message
            .options
            .as_ref()
            .is_some_and(|options| options.map_entry()),
        ..MessageInfo::default()
    };
    for field in &message.field {
        let kind = match field.r#type() {
            Type::String => FieldKind::Text,
            Type::Message => {
                FieldKind::Message(field.type_name().trim_start_matches('.').to_string())
            }
            _ => FieldKind::Other,
        };
        info.fields.insert(
            field.number() as u32,
            FieldInfo {
                name: field.name().to_string(),
                repeated: field.label() == Label::Repeated,
                kind,
            },
        );
    }
    for nested in &message.nested_type {
        collect(&full_name, nested, messages);
    }
    messages.insert(full_name, info);
}

/// One field of the wire format: its number and, for length-delimited
/// fields, its bytes.
struct WireField<'a> {
    number: u32,
    bytes: Option<&'a [u8]>,
}

/// Reads the fields of one message's bytes; stops at the first malformed one.
struct WireFields<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for WireFields<'a> {
    type Item = WireField<'a>;

    fn next(&mut self) -> Option<WireField<'a>> {
        if self.rest.is_empty() {
            return None;
        }
        let tag = varint(&mut self.rest)?;
        let number = u32::try_from(tag >> 3).ok()?;
        let bytes = match tag & 7 {
            0 => {
                varint(&mut self.rest)?;
                None
            }
            1 => {
                self.rest = self.rest.get(8..)?;
                None
            }
            5 => {
                self.rest = self.rest.get(4..)?;
                None
            }
            2 => {
                let length = usize::try_from(varint(&mut self.rest)?).ok()?;
                let (value, rest) = (self.rest.get(..length)?, self.rest.get(length..)?);
                self.rest = rest;
                Some(value)
            }
            // Groups (proto2) are not in the contract; stop.
            _ => return None,
        };
        Some(WireField { number, bytes })
    }
}

fn varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

fn walk(
    messages: &HashMap<String, MessageInfo>,
    message: &MessageInfo,
    bytes: &[u8],
    path: &str,
    depth: usize,
) -> Option<String> {
    if depth > MAX_DEPTH {
        return None;
    }
    let mut counts: HashMap<u32, usize> = HashMap::new();
    for wire in (WireFields { rest: bytes }) {
        let Some(field) = message.fields.get(&wire.number) else {
            continue;
        };
        let index = counts.entry(wire.number).or_insert(0);
        let here = match (path.is_empty(), field.repeated) {
            (true, false) => field.name.clone(),
            (false, false) => format!("{path}.{}", field.name),
            (true, true) => format!("{}[{index}]", field.name),
            (false, true) => format!("{path}.{}[{index}]", field.name),
        };
        *index += 1;
        let Some(value) = wire.bytes else { continue };
        match &field.kind {
            FieldKind::Text if value.contains(&0) => return Some(here),
            FieldKind::Message(type_name) => {
                let Some(nested) = messages.get(type_name) else {
                    continue;
                };
                let found = if nested.map_entry {
                    walk_entry(messages, nested, value, path, &field.name, depth + 1)
                } else {
                    walk(messages, nested, value, &here, depth + 1)
                };
                if found.is_some() {
                    return found;
                }
            }
            _ => {}
        }
    }
    None
}

/// A map entry: named `field[key]` after its key, as callers write it.
fn walk_entry(
    messages: &HashMap<String, MessageInfo>,
    entry: &MessageInfo,
    bytes: &[u8],
    path: &str,
    field: &str,
    depth: usize,
) -> Option<String> {
    let map = if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    };
    let key = WireFields { rest: bytes }
        .filter(|wire| wire.number == 1)
        .last()
        .and_then(|wire| wire.bytes);
    let key_is_text = matches!(
        entry.fields.get(&1).map(|field| &field.kind),
        Some(FieldKind::Text)
    );
    if key_is_text && key.is_some_and(|key| key.contains(&0)) {
        return Some(format!("{map} (a key)"));
    }
    let key = key
        .map(|key| String::from_utf8_lossy(key).escape_debug().to_string())
        .unwrap_or_default();
    let here = format!("{map}[{key}]");
    for wire in (WireFields { rest: bytes }).filter(|wire| wire.number == 2) {
        let (Some(value), Some(field)) = (wire.bytes, entry.fields.get(&2)) else {
            continue;
        };
        match &field.kind {
            FieldKind::Text if value.contains(&0) => return Some(here),
            FieldKind::Message(type_name) => {
                let Some(nested) = messages.get(type_name) else {
                    continue;
                };
                let found = walk(messages, nested, value, &here, depth + 1);
                if found.is_some() {
                    return found;
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::v1::{Identifier, IdentifierType, Value, value};
    use crate::profile::v1::{CreateProfileRequest, GetProfileRequest};

    fn text(value: &str) -> Value {
        Value {
            kind: Some(value::Kind::StringValue(value.into())),
        }
    }

    #[test]
    fn a_nul_byte_is_found_and_named_by_its_path() {
        let mut request = CreateProfileRequest {
            identifiers: vec![
                Identifier {
                    r#type: IdentifierType::Email as i32,
                    value: "a@example.com".into(),
                    ..Default::default()
                },
                Identifier {
                    r#type: IdentifierType::CookieId as i32,
                    value: "c\0ookie".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let name = CreateProfileRequest::full_name();
        assert_eq!(
            nul_field(&name, &request.encode_to_vec()).as_deref(),
            Some("identifiers[1].value")
        );
        request.identifiers[1].value = "cookie".into();
        assert_eq!(nul_field(&name, &request.encode_to_vec()), None);
        request.attributes.insert("plan".into(), text("go\0ld"));
        assert_eq!(
            nul_field(&name, &request.encode_to_vec()).as_deref(),
            Some("attributes[plan].string_value")
        );
        request.attributes.clear();
        request.attributes.insert("pl\0an".into(), text("gold"));
        assert_eq!(
            nul_field(&name, &request.encode_to_vec()).as_deref(),
            Some("attributes (a key)")
        );
    }

    #[test]
    fn every_request_type_is_known() {
        assert!(messages().contains_key(&GetProfileRequest::full_name()));
        let entry = messages()
            .get("cairn.profile.v1.CreateProfileRequest.AttributesEntry")
            .expect("map entries are nested types");
        assert!(entry.map_entry);
        // Every method's input and output type of every service.
        let set = prost_types::FileDescriptorSet::decode(crate::FILE_DESCRIPTOR_SET).unwrap();
        for file in &set.file {
            for service in &file.service {
                for method in &service.method {
                    for type_name in [method.input_type(), method.output_type()] {
                        let name = type_name.trim_start_matches('.');
                        assert!(messages().contains_key(name), "{name}");
                    }
                }
            }
        }
    }
}
