//! DIMSE command sets (PS3.7 §9.3, always Implicit VR Little Endian): reading a request's,
//! writing a response's.

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN;

pub const C_STORE_RQ: u16 = 0x0001;
pub const C_STORE_RSP: u16 = 0x8001;
pub const C_ECHO_RQ: u16 = 0x0030;
pub const C_ECHO_RSP: u16 = 0x8030;
/// Command Data Set Type value meaning "no data set follows".
const NO_DATA_SET: u16 = 0x0101;

pub const SUCCESS: u16 = 0x0000;
/// Refused: out of resources (the spool could not take the instance).
pub const OUT_OF_RESOURCES: u16 = 0xA700;
/// Error: cannot understand (a data set that is not DICOM, a command without its UIDs).
pub const CANNOT_UNDERSTAND: u16 = 0xC000;
/// Failure: no such SOP class / unrecognized operation.
pub const UNRECOGNIZED_OPERATION: u16 = 0x0211;

/// The fields of a request the gateway acts on.
#[derive(Debug, Clone, Default)]
pub struct Command {
    pub field: u16,
    pub message_id: u16,
    pub sop_class: String,
    pub sop_instance: String,
    pub has_data_set: bool,
}

fn text(obj: &InMemDicomObject, tag: dicom_core::Tag) -> String {
    obj.get(tag)
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
        .unwrap_or_default()
}

fn int(obj: &InMemDicomObject, tag: dicom_core::Tag) -> Option<u16> {
    obj.get(tag).and_then(|e| e.to_int::<u16>().ok())
}

/// Reads a command set.
pub fn parse(bytes: &[u8]) -> Result<Command, String> {
    let obj = InMemDicomObject::read_dataset_with_ts(bytes, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
        .map_err(|e| format!("unreadable command set: {e}"))?;
    let field = int(&obj, tags::COMMAND_FIELD).ok_or("command set without Command Field")?;
    Ok(Command {
        field,
        message_id: int(&obj, tags::MESSAGE_ID).unwrap_or(0),
        sop_class: text(&obj, tags::AFFECTED_SOP_CLASS_UID),
        sop_instance: text(&obj, tags::AFFECTED_SOP_INSTANCE_UID),
        has_data_set: int(&obj, tags::COMMAND_DATA_SET_TYPE).is_some_and(|t| t != NO_DATA_SET),
    })
}

/// A response command set to `request`, with its group length.
pub fn response(request: &Command, field: u16, status: u16) -> Vec<u8> {
    let mut obj = InMemDicomObject::new_empty();
    obj.put(DataElement::new(
        tags::AFFECTED_SOP_CLASS_UID,
        VR::UI,
        uid(&request.sop_class),
    ));
    obj.put(DataElement::new(
        tags::COMMAND_FIELD,
        VR::US,
        PrimitiveValue::from(field),
    ));
    obj.put(DataElement::new(
        tags::MESSAGE_ID_BEING_RESPONDED_TO,
        VR::US,
        PrimitiveValue::from(request.message_id),
    ));
    obj.put(DataElement::new(
        tags::COMMAND_DATA_SET_TYPE,
        VR::US,
        PrimitiveValue::from(NO_DATA_SET),
    ));
    obj.put(DataElement::new(
        tags::STATUS,
        VR::US,
        PrimitiveValue::from(status),
    ));
    if !request.sop_instance.is_empty() {
        obj.put(DataElement::new(
            tags::AFFECTED_SOP_INSTANCE_UID,
            VR::UI,
            uid(&request.sop_instance),
        ));
    }
    encode(&obj)
}

/// A request command set with a data set following (C-FIND, C-MOVE): class, field, message
/// ID, priority medium, and `extra` elements (e.g. Move Destination).
pub fn request(
    field: u16,
    sop_class: &str,
    message_id: u16,
    extra: &[(dicom_core::Tag, VR, PrimitiveValue)],
) -> Vec<u8> {
    let mut obj = InMemDicomObject::new_empty();
    obj.put(DataElement::new(
        tags::AFFECTED_SOP_CLASS_UID,
        VR::UI,
        uid(sop_class),
    ));
    obj.put(DataElement::new(
        tags::COMMAND_FIELD,
        VR::US,
        PrimitiveValue::from(field),
    ));
    obj.put(DataElement::new(
        tags::MESSAGE_ID,
        VR::US,
        PrimitiveValue::from(message_id),
    ));
    obj.put(DataElement::new(
        tags::PRIORITY,
        VR::US,
        PrimitiveValue::from(0u16),
    ));
    obj.put(DataElement::new(
        tags::COMMAND_DATA_SET_TYPE,
        VR::US,
        PrimitiveValue::from(0u16),
    ));
    for (tag, vr, value) in extra {
        let value = match (vr, value) {
            // AE values are padded with a space to even length.
            (VR::AE, v) => {
                let mut t = v.to_str().to_string();
                if t.len() % 2 == 1 {
                    t.push(' ');
                }
                PrimitiveValue::from(t)
            }
            (_, v) => v.clone(),
        };
        obj.put(DataElement::new(*tag, *vr, value));
    }
    encode(&obj)
}

/// A C-STORE request command set for `command` (its class, instance and message ID).
pub fn store_request(command: &Command) -> Vec<u8> {
    let instance = (
        tags::AFFECTED_SOP_INSTANCE_UID,
        VR::UI,
        uid(&command.sop_instance),
    );
    request(
        C_STORE_RQ,
        &command.sop_class,
        command.message_id,
        &[instance],
    )
}

/// The Status of a response command set.
pub fn parse_status(bytes: &[u8]) -> Result<u16, String> {
    let obj = InMemDicomObject::read_dataset_with_ts(bytes, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
        .map_err(|e| format!("unreadable response: {e}"))?;
    int(&obj, tags::STATUS).ok_or_else(|| "a response without a status".into())
}

/// A UID value, padded to even length with a NUL as PS3.5 wants.
fn uid(s: &str) -> PrimitiveValue {
    let mut s = s.to_string();
    if s.len() % 2 == 1 {
        s.push('\0');
    }
    PrimitiveValue::from(s)
}

/// The command set in Implicit VR Little Endian, led by its group length.
fn encode(obj: &InMemDicomObject) -> Vec<u8> {
    let mut body = Vec::new();
    obj.write_dataset_with_ts(&mut body, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
        .expect("a command set encodes");
    // (0000,0000) UL, implicit VR: tag, length 4, value.
    let mut out = Vec::with_capacity(body.len() + 12);
    out.extend_from_slice(&[0, 0, 0, 0, 4, 0, 0, 0]);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_reads_back_with_its_group_length() {
        let rq = Command {
            field: C_STORE_RQ,
            message_id: 7,
            sop_class: "1.2.840.10008.5.1.4.1.1.2".into(),
            sop_instance: "1.2.3.4.5".into(),
            has_data_set: true,
        };
        let rsp = response(&rq, C_STORE_RSP, SUCCESS);
        let len = u32::from_le_bytes(rsp[8..12].try_into().unwrap()) as usize;
        assert_eq!(len, rsp.len() - 12);
        let back = parse(&rsp).unwrap();
        assert_eq!(back.field, C_STORE_RSP);
        assert_eq!(back.sop_class, rq.sop_class);
        assert_eq!(back.sop_instance, rq.sop_instance);
        assert!(!back.has_data_set);
    }
}
