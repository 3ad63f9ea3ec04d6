//! Attack on the one-pass success reader ([`SuccessFields::read`]): edge-case bodies
//! (UTF-8 edges, a byte order mark, nesting at and past the reader's depth, huge numbers,
//! `-0`, exponents, every whitespace JSON allows, keys that differ only by an escape,
//! repeated unknown keys, a success that also names 131047, every cut of the documented
//! answer, `data` as an array) and arbitrary bytes. For each, a body the reader accepts
//! must be read by serde to the same fields, and a clean success must give the same
//! acceptance as serde's way (forced by an escaped string in an extra field, which the
//! reader declines). The reader must never panic.

use super::{Accepted, RawResponse, SuccessEnvelope, clean_success};
use crate::key::ApiKey;
use crate::success_answer::SuccessFields;

fn key() -> ApiKey {
    ApiKey::new("sk_attack13_key").unwrap()
}

fn success_of(body: &[u8]) -> Option<Accepted> {
    clean_success(
        &RawResponse {
            status: 200,
            body,
            truncated: false,
            retry_after: None,
        },
        &key(),
    )
}

/// `body` (an object) with one more field whose string holds an escape, so the one-pass
/// reader declines it and serde reads it: the way every body went before.
fn forced_to_serde(body: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(body).ok()?;
    let open = text.find('{')?;
    let mut forced = text[..=open].to_owned();
    forced.push_str(r#""zz_attack13":"\u0041","#);
    let rest = &text[open + 1..];
    // `{}` (or `{ }`) has no field to put a comma before.
    if rest.trim_start().starts_with('}') {
        forced.pop();
    }
    forced.push_str(rest);
    Some(forced.into_bytes())
}

/// The reader and serde agree on `body`; a clean success is the same either way.
fn check(body: &[u8]) {
    let Some(fields) = SuccessFields::read(body) else {
        return;
    };
    let shown = String::from_utf8_lossy(body);
    let envelope = serde_json::from_slice::<SuccessEnvelope<'_>>(body)
        .unwrap_or_else(|e| panic!("the reader accepts what serde refuses ({e}): {shown:?}"));
    assert_eq!(envelope.fields(), fields, "{shown:?}");
    let forced = forced_to_serde(body).unwrap();
    assert_eq!(
        SuccessFields::read(&forced),
        None,
        "{:?}",
        String::from_utf8_lossy(&forced)
    );
    assert_eq!(success_of(body), success_of(&forced), "{shown:?}");
}

const DOCUMENTED: &str = crate::success_answer::tests::DOCUMENTED;

fn success_with(extra: &str) -> String {
    format!(
        r#"{{"status":"success",{extra},"data":{{"status":"SENT","messageId":"m","waId":"w"}}}}"#
    )
}

#[test]
fn edge_case_bodies_are_read_as_serde_reads_them() {
    let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    let deep_objects = |n: usize| format!("{}1{}", r#"{"a":"#.repeat(n), "}".repeat(n));
    let mut bodies: Vec<Vec<u8>> = vec![
        DOCUMENTED.as_bytes().to_vec(),
        [b"\xef\xbb\xbf".as_slice(), DOCUMENTED.as_bytes()].concat(),
        [DOCUMENTED.as_bytes(), b"\xef\xbb\xbf".as_slice()].concat(),
        [DOCUMENTED.as_bytes(), b"\0".as_slice()].concat(),
        [DOCUMENTED.as_bytes(), b"\x0c".as_slice()].concat(),
        format!(" \t\r\n{DOCUMENTED} \t\r\n").into_bytes(),
        DOCUMENTED.replace(' ', "\t").into_bytes(),
        DOCUMENTED.replace('\n', "\r\n").into_bytes(),
        DOCUMENTED.replace(": ", " \r\n\t: \r\n\t").into_bytes(),
    ];
    for extra in [
        r#""n":-0"#,
        r#""n":-0.0e-0"#,
        r#""n":1E400"#,
        r#""n":-1e-400"#,
        r#""n":123456789012345678901234567890123456789012345678901234567890"#,
        r#""n":1.7976931348623157e309"#,
        r#""n":18446744073709551616"#,
        r#""n":-9223372036854775809"#,
        r#""n":0e+1"#,
        r#""n":+1"#,
        r#""n":01"#,
        r#""n":-01"#,
        r#""n":00.5"#,
        r#""n":[0,01]"#,
        r#""n":.5"#,
        r#""n":1e"#,
        r#""n":--1"#,
        r#""n":0x10"#,
        r#""n":Infinity"#,
        r#""n":NaN"#,
        r#""x":1,"x":2,"x":"three""#,
        r#""Status":"error","STATUS":"failed""#,
        r#""st\u0061tus":"error""#,
        r#""status\u0000":"error""#,
        r#""errors":[{"code":131047,"title":"Re-engagement message"}]"#,
        r#""message":"131047 Re-engagement message: more than 24 hours have passed""#,
        r#""errors":{"code":131049},"error":{"code":131050}"#,
        r#""x":"é✓𝄞 \u{2028}""#,
        "\"x\":\"\u{2028}\u{2029}\u{feff}\u{7f}\"",
        "\"x\":\"\u{1}\"",
        "\"x\":\"\t\"",
        r#""x":"\/""#,
        r#""x":"\ud800""#,
        r#""x":tru"#,
        r#""x":nulll"#,
        r#""x":true,"y":false,"z":null"#,
        r#""messageId":"top","waId":"top""#,
        r#""data ":{"status":"FAILED"}"#,
    ] {
        bodies.push(success_with(extra).into_bytes());
    }
    for depth in [30, 31, 32, 33, 40, 127, 128, 129, 300] {
        bodies.push(success_with(&format!(r#""x":{}"#, deep(depth))).into_bytes());
        bodies.push(success_with(&format!(r#""x":{}"#, deep_objects(depth))).into_bytes());
        bodies.push(
            format!(
                r#"{{"status":"success","data":{{"status":"SENT","x":{}}}}}"#,
                deep(depth)
            )
            .into_bytes(),
        );
    }
    for data in [
        r#"["m","w","SENT"]"#,
        r#"[]"#,
        r#"null"#,
        r#""SENT""#,
        r#"{"status":null}"#,
        r#"{"status":"sent","messageId":"  ","waId":" w "}"#,
        r#"{"status":"SENT","messageId":"sk_attack13_key","waId":"a-sk_attack13_key-b"}"#,
        r#"{"status":"SENT","messageId":1}"#,
        r#"{"status":"SENT","data":{"status":"FAILED"}}"#,
        r#"{"status":"SENT","status ":"FAILED"}"#,
        r#"{}"#,
    ] {
        bodies.push(format!(r#"{{"status":"SuCCeSS","data":{data}}}"#).into_bytes());
    }
    // Invalid UTF-8 of every kind in a field nobody reads.
    for bad in [
        &b"\xff"[..],
        b"\xc0\x80",
        b"\xed\xa0\x80",
        b"\xf4\x90\x80\x80",
        b"\xe2\x82",
    ] {
        bodies.push(
            [
                br#"{"status":"success","x":""#.as_slice(),
                bad,
                br#"","data":{"status":"SENT"}}"#.as_slice(),
            ]
            .concat(),
        );
    }
    // Every cut of the documented answer, and every one-byte deletion.
    let documented = DOCUMENTED.as_bytes();
    for end in 0..documented.len() {
        bodies.push(documented[..end].to_vec());
        let mut deleted = documented.to_vec();
        deleted.remove(end);
        bodies.push(deleted);
    }
    let mut accepted = 0;
    for body in &bodies {
        if SuccessFields::read(body).is_some() {
            accepted += 1;
        }
        check(body);
    }
    // The list exercises the accepting side too, not only declines.
    assert!(accepted >= 40, "only {accepted} bodies read in one pass");
}

#[test]
fn a_clean_success_naming_131047_elsewhere_is_accepted_either_way() {
    for extra in [
        r#""errors":[{"code":131047,"title":"Re-engagement message"}]"#,
        r#""message":"(#131047) Re-engagement message""#,
        r#""x":{"code":131049},"y":131050"#,
    ] {
        let body = success_with(extra);
        assert!(SuccessFields::read(body.as_bytes()).is_some(), "{body}");
        let accepted = success_of(body.as_bytes()).expect("a clean success");
        assert_eq!(accepted.status, "SENT");
        assert_eq!(
            Some(accepted),
            success_of(&forced_to_serde(body.as_bytes()).unwrap())
        );
    }
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config::with_cases(4096))]

    /// Arbitrary bytes: the reader never panics, and agrees with serde where it reads.
    #[test]
    fn arbitrary_bytes_never_panic_and_agree(body in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
        check(&body);
    }

    /// The documented answer with a few bytes replaced by JSON's structural bytes.
    #[test]
    fn the_documented_answer_with_structural_edits_agrees(
        edits in proptest::collection::vec(
            (proptest::arbitrary::any::<proptest::sample::Index>(), proptest::sample::select(
                b"{}[]\":,\\ \t\r\n0-+.eEtrufalsn\x00\xff".to_vec())),
            1..4,
        )
    ) {
        let mut body = DOCUMENTED.as_bytes().to_vec();
        for (at, byte) in edits {
            let at = at.index(body.len());
            body[at] = byte;
        }
        check(&body);
    }
}
