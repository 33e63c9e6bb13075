//! The change journal decoder and cursor rules, on buffers laid out as Windows returns them.
use super::*;

/// One FSCTL_READ_USN_JOURNAL buffer assembled by hand from the documented USN_RECORD_V2
/// layout (not by the encoder below, so that a mistake shared by both cannot pass): next USN
/// 0x1048, then "a.txt" created and extended in directory 0x0005000000000005.
const ONE_V2_RECORD: &[u8] = &[
    0x48, 0x10, 0, 0, 0, 0, 0, 0, // next USN
    0x48, 0, 0, 0, // record length 72
    2, 0, 0, 0, // version 2.0
    0x23, 0x01, 0, 0, 0, 0, 0x01, 0, // file reference
    0x05, 0, 0, 0, 0, 0, 0x05, 0, // parent reference
    0, 0x10, 0, 0, 0, 0, 0, 0, // USN 0x1000
    0, 0, 0, 0, 0, 0, 0xDA, 0x01, // timestamp
    0x02, 0x01, 0, 0x80, // reason: close | file-create | data-extend
    0, 0, 0, 0, // source info
    0, 0, 0, 0, // security id
    0x20, 0, 0, 0, // attributes: archive
    10, 0, // name length
    60, 0, // name offset
    b'a', 0, b'.', 0, b't', 0, b'x', 0, b't', 0, // "a.txt"
    0, 0, // padding to 8
];

/// A record of `version` (2 or 3) as Windows lays it out.
fn record(version: u16, file: u128, parent: u128, usn: i64, reason: u32, name: &[u16]) -> Vec<u8> {
    let header = if version == 3 { 76 } else { 60 };
    let length = (header + name.len() * 2).div_ceil(8) * 8;
    let mut out = Vec::with_capacity(length);
    out.extend_from_slice(&(length as u32).to_le_bytes());
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    if version == 3 {
        out.extend_from_slice(&file.to_le_bytes());
        out.extend_from_slice(&parent.to_le_bytes());
    } else {
        out.extend_from_slice(&(file as u64).to_le_bytes());
        out.extend_from_slice(&(parent as u64).to_le_bytes());
    }
    out.extend_from_slice(&usn.to_le_bytes());
    out.extend_from_slice(&0x01DB_0000_0000_0000i64.to_le_bytes());
    out.extend_from_slice(&reason.to_le_bytes());
    out.extend_from_slice(&[0; 8]); // source info, security id
    out.extend_from_slice(&0x20u32.to_le_bytes());
    out.extend_from_slice(&((name.len() * 2) as u16).to_le_bytes());
    out.extend_from_slice(&(header as u16).to_le_bytes());
    for unit in name {
        out.extend_from_slice(&unit.to_le_bytes());
    }
    out.resize(length, 0);
    out
}

fn buffer(next: i64, records: &[Vec<u8>]) -> Vec<u8> {
    let mut out = next.to_le_bytes().to_vec();
    for record in records {
        out.extend_from_slice(record);
    }
    out
}

fn utf16(text: &str) -> Vec<u16> {
    text.encode_utf16().collect()
}

#[test]
fn the_hand_assembled_v2_record_decodes_field_by_field() {
    let (next, records) = parse_records(ONE_V2_RECORD).unwrap();
    assert_eq!(next, 0x1048);
    assert_eq!(
        records,
        vec![UsnRecord {
            usn: 0x1000,
            file_id: 0x0001_0000_0000_0123,
            parent_id: 0x0005_0000_0000_0005,
            timestamp: 0x01DA_0000_0000_0000,
            reason: 0x8000_0102,
            attributes: 0x20,
            name: "a.txt".to_string(),
        }]
    );
    assert_eq!(
        reason_names(0x8000_0102),
        vec!["data-extend", "file-create"]
    );
    // The encoder the other tests use agrees with the hand-made bytes.
    let encoded = buffer(
        0x1048,
        &[record(
            2,
            0x0001_0000_0000_0123,
            0x0005_0000_0000_0005,
            0x1000,
            0x8000_0102,
            &utf16("a.txt"),
        )],
    );
    let (_, again) = parse_records(&encoded).unwrap();
    assert_eq!(
        (again[0].file_id, again[0].name.as_str()),
        (records[0].file_id, "a.txt")
    );
}

#[test]
fn v3_records_keep_128_bit_ids_and_v4_records_are_skipped() {
    let wide = 0xABCD_0000_0000_0000_0000_0000_0000_0042u128;
    let mut v4 = record(2, 1, 2, 3, 0, &utf16("x"));
    v4[4] = 4; // a range record: another layout, skipped by its length
    let bytes = buffer(
        0x2000,
        &[
            record(3, wide, 5, 0x1800, 0x1000, &utf16("old name.txt")),
            v4,
            record(3, wide, 5, 0x1900, 0x2000, &utf16("new name.txt")),
        ],
    );
    let (next, records) = parse_records(&bytes).unwrap();
    assert_eq!(next, 0x2000);
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].file_id, wide);
    assert_eq!(reason_names(records[0].reason), vec!["rename-old-name"]);
    assert_eq!(records[1].name, "new name.txt");
    let files = by_file(&records);
    let changes = &files[&wide];
    assert_eq!(changes.reason, 0x3000);
    assert_eq!(
        changes.names,
        vec![
            (5, "old name.txt".to_string()),
            (5, "new name.txt".to_string())
        ]
    );
    assert_eq!(changes.last_usn, 0x1900);
}

#[test]
fn names_that_are_not_valid_utf16_are_kept_lossily() {
    let name = [0x61, 0xD800, 0x62]; // an unpaired surrogate between "a" and "b"
    let (_, records) = parse_records(&buffer(8, &[record(2, 1, 2, 3, 1, &name)])).unwrap();
    assert_eq!(records[0].name, "a\u{FFFD}b");
}

#[test]
fn malformed_buffers_are_errors_not_guesses() {
    assert_eq!(parse_records(&[1, 2, 3]), Err(UsnError::Short(3)));
    // A length running past the buffer.
    let mut long = buffer(8, &[record(2, 1, 2, 3, 1, &utf16("f"))]);
    long[8] = 200;
    assert!(matches!(
        parse_records(&long),
        Err(UsnError::Length { offset: 8, .. })
    ));
    // A zero length would loop for ever.
    let mut zero = buffer(8, &[record(2, 1, 2, 3, 1, &utf16("f"))]);
    zero[8..12].copy_from_slice(&0u32.to_le_bytes());
    assert!(matches!(parse_records(&zero), Err(UsnError::Length { .. })));
    // A name pointing outside its record.
    let mut name = buffer(8, &[record(2, 1, 2, 3, 1, &utf16("f"))]);
    name[8 + 58] = 250;
    assert!(matches!(parse_records(&name), Err(UsnError::Name { .. })));
    // A V2 record too short for its header.
    let mut short = record(2, 1, 2, 3, 1, &[]);
    short.truncate(56);
    short[0] = 56;
    assert!(matches!(
        parse_records(&buffer(8, &[short])),
        Err(UsnError::Length { .. })
    ));
    // An empty read (just the next USN) is no records.
    assert_eq!(parse_records(&8i64.to_le_bytes()), Ok((8, vec![])));
}

#[test]
fn the_cursor_resumes_or_names_the_gap() {
    let now = JournalState {
        journal_id: 0x01D9_AAAA,
        first_usn: 0,
        next_usn: 90_000,
        lowest_valid_usn: 10_000,
    };
    assert_eq!(resume(None, &now), Resume::Fresh);
    let cursor = |journal_id, next_usn| {
        Some(Cursor {
            journal_id,
            next_usn,
        })
    };
    assert_eq!(
        resume(cursor(0x01D9_AAAA, 50_000), &now),
        Resume::From(50_000)
    );
    // Nothing happened: resume at the end.
    assert_eq!(
        resume(cursor(0x01D9_AAAA, 90_000), &now),
        Resume::From(90_000)
    );
    assert_eq!(
        resume(cursor(0x01D9_BBBB, 50_000), &now),
        Resume::Gap(JournalGap::Recreated {
            old: 0x01D9_BBBB,
            new: 0x01D9_AAAA
        })
    );
    assert_eq!(
        resume(cursor(0x01D9_AAAA, 5_000), &now),
        Resume::Gap(JournalGap::Wrapped {
            wanted: 5_000,
            lowest: 10_000
        })
    );
    assert_eq!(
        resume(cursor(0x01D9_AAAA, 95_000), &now),
        Resume::Gap(JournalGap::RolledBack {
            wanted: 95_000,
            next: 90_000
        })
    );
    let gap = JournalGap::Wrapped {
        wanted: 5_000,
        lowest: 10_000,
    };
    assert_eq!(
        gap.to_string(),
        "the change journal wrapped: records from USN 5000 on were discarded (the oldest kept is 10000)"
    );
}

#[test]
fn the_cursor_is_stored_as_json() {
    let cursor = Cursor {
        journal_id: 7,
        next_usn: 4096,
    };
    let text = serde_json::to_string(&cursor).unwrap();
    assert_eq!(text, r#"{"journal_id":7,"next_usn":4096}"#);
    assert_eq!(serde_json::from_str::<Cursor>(&text).unwrap(), cursor);
}
